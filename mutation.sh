#!/usr/bin/env bash
# Mutation testing of the engine with Stryker.NET (dotnet-stryker, a local tool pinned in
# .config/dotnet-tools.json). stryker-config.json names what is mutated (the HugeTLB vmemmap
# optimization and the page-table code by default) and the tests that judge each mutant (a
# filter over the hugetlb and engine properties); the properties run at a small budget
# (PS_TESTS, default 5 here) so a run fits a night on two cores. Stryker runs one mutant at a
# time (concurrency 1) and, per mutant, only the tests that cover it.
#
#   ./mutation.sh                          → StrykerOutput/<date>/reports/mutation-report.html
#   ./mutation.sh --mutate '**/Mm/Buddy.cs' (extra arguments go to dotnet-stryker)
#   PS_STRYKER_CONFIG=stryker-quick.json ./mutation.sh
#                                          → the same files judged by the fast unit and example
#                                            tests only (no corpus, race or oracle runs): about an
#                                            hour on two cores, a lower bound on the full score
#
# Stryker runs from Properties/ (the test project; at the root it would take the solution).
# Repros that failing properties write under a mutant go to StrykerOutput/repros, never to
# repros/ (the failure database that the next test run replays).
set -euo pipefail
cd "$(dirname "$0")"
root=$(pwd)
mkdir -p StrykerOutput
export PS_TESTS="${PS_TESTS:-5}"
# One test at a time (Properties.csproj): parallel test classes switch the active mutant under
# each other and report killed mutants as survived.
export PsSerialTests=true
export PS_REPRO_DIR="$root/StrykerOutput/repros"
dotnet tool restore
cd Properties
dotnet tool run dotnet-stryker --config-file "${PS_STRYKER_CONFIG:-$root/stryker-config.json}" --output "$root/StrykerOutput/run" "$@"
