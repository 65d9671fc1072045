#!/usr/bin/env bash
# Line and branch coverage of the suite: coverlet's Cobertura file (coverlet.collector, already
# referenced by the test project) and an HTML report by reportgenerator, a local dotnet tool
# pinned in .config/dotnet-tools.json (restored here, not by .ci/run: the test command needs
# nothing of it). A smaller property budget (PS_TESTS, default 20 here) shortens the properties;
# the meta-tests still search each buggy variant at its own measured effort (never below the
# default 200: VariantTarget.SearchEffort). The report is written even when a test fails; the
# script then exits with the test command's status.
#
#   ./coverage.sh            → TestResults/coverage/report/index.html and Summary.txt
set -euo pipefail
cd "$(dirname "$0")"
out=TestResults/coverage
rm -rf "$out"
dotnet tool restore
status=0
PS_TESTS="${PS_TESTS:-20}" dotnet test --collect:"XPlat Code Coverage" --results-directory "$out/raw" || status=$?
dotnet tool run reportgenerator \
  "-reports:$out/raw/*/coverage.cobertura.xml" \
  "-targetdir:$out/report" \
  "-reporttypes:Html;TextSummary" \
  "-assemblyfilters:+PropertySuite.Engine;+PropertySuite.Invariants"
cat "$out/report/Summary.txt"
exit "$status"
