# Sourced instead of lib.sh by the suites that test what packaging/build.sh made (the
# packages, the upgrade, the image): ARTIFACT names the variable holding its path. Without
# it the suite is skipped; otherwise lib.sh is loaded with no berth binary of its own (the
# suite runs the artifact's) and REPO is the checkout.
#
#   SUITE=image ARTIFACT=BERTH_OCI; . "$(dirname "$0")/artifact.sh"
if [ -z "${!ARTIFACT:-}" ]; then
    echo "# skip: $ARTIFACT is not set (build it with packaging/build.sh)"
    echo "0 passed, 0 failed"
    exit 0
fi
BERTH_BIN=/bin/true
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
REPO=$(cd "$E2E_DIR/../.." && pwd)
