#!/usr/bin/env bash
# Line and branch coverage of the suite: coverlet's Cobertura file (coverlet.collector, already
# referenced by the test project) and an HTML report by reportgenerator, a local dotnet tool
# pinned in .config/dotnet-tools.json (restored here, not by .ci/run: the test command needs
# nothing of it).
#
#   ./coverage.sh          the quick form (minutes): every test at a property budget of
#                          PS_TESTS=20 (default here), except the ones that search for a buggy
#                          variant at its measured effort: the meta-tests' buggy rows
#                          (BuggyVariantIsFoundAndShrunk), the expected-outcome snapshots
#                          (race, HGM, Anshuman's concern) and the reach tests. Their lines are
#                          still executed by the example tests and the regression corpus, which
#                          replay each catalogued bug's shrunk repro.
#   ./coverage.sh --full   every test, the searches at their measured efforts (VariantTarget.
#                          SearchEffort is a floor that PS_TESTS never lowers): about as long as
#                          `dotnet test` times the coverlet overhead.
#
# Output: TestResults/coverage/report/index.html and Summary.txt (printed). The report is
# written even when a test fails; the script then exits with the test command's status.
set -euo pipefail
cd "$(dirname "$0")"
filter=()
case "${1:-}" in
  "") filter=(--filter "FullyQualifiedName!~BuggyVariantIsFoundAndShrunk&FullyQualifiedName!~OutcomesMatchTheApprovedSnapshot&FullyQualifiedName!~AnshumanConcernSnapshot&FullyQualifiedName!~ReachTests") ;;
  --full) ;;
  *) echo "usage: ./coverage.sh [--full]" >&2; exit 2 ;;
esac
out=TestResults/coverage
rm -rf "$out"
dotnet tool restore
status=0
PS_TESTS="${PS_TESTS:-20}" dotnet test "${filter[@]}" --collect:"XPlat Code Coverage" --results-directory "$out/raw" || status=$?
dotnet tool run reportgenerator \
  "-reports:$out/raw/*/coverage.cobertura.xml" \
  "-targetdir:$out/report" \
  "-reporttypes:Html;TextSummary" \
  "-assemblyfilters:+PropertySuite.Engine;+PropertySuite.Invariants"
cat "$out/report/Summary.txt"
exit "$status"
