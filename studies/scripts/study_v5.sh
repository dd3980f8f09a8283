#!/bin/sh
# Study v5 (studies/results/study_v5/protocol.md), started or resumed here or on a new machine:
# a git worktree at the commit every study v5 run is pinned to, the runs already published under
# studies/results/study_v5/NAME restored into its results, then one 1-thread runner for the arms
# named, in the background.
#     sh studies/scripts/study_v5.sh NAME ARM [ARM ...]   # NAME: shapes_36ep | hard_36ep | trees_fold0
# Publish: python studies/scripts/study_trees_report.py --out TREE/studies/output/study_v5/NAME \
#     --publish studies/results/study_v5/NAME
set -eu
COMMIT=02e474746254b944bae98a7312bdf0496f97ec4b
MAIN=$(git rev-parse --show-toplevel)
NAME=${1:?"name a setting: shapes_36ep, hard_36ep or trees_fold0"}
shift
[ $# -gt 0 ] || { echo "name the arms to run (nobias batchnorm_reparam ...)" >&2; exit 2; }
TREE=$(realpath -m "$MAIN/../study_v5")
LOG=$TREE/study_v5_${NAME}_$(echo "$@" | tr ' ' '_').log
PID=$LOG.pid
if [ -f "$PID" ] && kill -0 "$(cat "$PID")" 2>/dev/null; then
    echo "these arms already run in $TREE (pid $(cat "$PID"))" >&2
    exit 1
fi
. "$(dirname "$0")/pinned_worktree.sh"
pinned_worktree "$MAIN" "$TREE" "$COMMIT"

OUT=studies/output/study_v5/$NAME
for sub in runs matches; do
    published=$MAIN/studies/results/study_v5/$NAME/$sub
    mkdir -p "$TREE/$OUT/$sub"
    if [ -n "$(ls -A "$published" 2>/dev/null)" ]; then cp -n "$published"/* "$TREE/$OUT/$sub/"; fi
done

cd "$TREE"
export OMP_NUM_THREADS=1
.venv/bin/python studies/scripts/study_trees.py --protocol "studies/results/study_v5/$NAME.json" \
    --arms "$@" --out "$OUT" --work "runs/study_v5/$NAME" --data "data/study_v5/$NAME" \
    > "$LOG" 2>&1 &
echo $! > "$PID"
echo "study v5 $NAME ($*) runs in $TREE: tail -f $LOG"
