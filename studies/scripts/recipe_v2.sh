#!/bin/sh
# Recipe v2's screens (studies/results/recipe_v2/screening.md), started or resumed on this
# machine or a new one: each from a git worktree at the commit it is pinned to, the runs already
# published under studies/results/recipe_v2/NAME/runs restored into its results, then one
# 1-thread runner in the background.
#     sh studies/scripts/recipe_v2.sh NAME        # NAME: warmup_36ep | ema_36ep
# Publish: python studies/scripts/screen_report.py --out TREE/OUT --publish studies/results/recipe_v2/NAME
# A tree keeps the layout of its commit: before the studies moved, bench/ and docs/.
set -eu
MAIN=$(git rev-parse --show-toplevel)
NAME=${1:?"name a screen: warmup_36ep or ema_36ep"}
case $NAME in
    warmup_36ep)
        COMMIT=9e0f4ac2979a33d0275e977c7b4f5fdf6da3c445 TREE=$MAIN/../recipe_v2 ARMS=nobias
        RUNNER=bench/study_trees.py PROTOCOL=docs/recipe_v2 OUT=bench/results/recipe_v2 ;;
    ema_36ep)
        COMMIT=b0e93372b5fe4816e23783ac0eaa6f0912b23161 TREE=$MAIN/../recipe_v2_ema ARMS="nobias nobias_ema"
        RUNNER=studies/scripts/study_trees.py PROTOCOL=studies/results/recipe_v2
        OUT=studies/output/recipe_v2 ;;
    *)
        echo "no screen $NAME: warmup_36ep or ema_36ep" >&2
        exit 2 ;;
esac
TREE=$(realpath -m "$TREE")

if [ -f "$TREE/recipe_v2.pid" ] && kill -0 "$(cat "$TREE/recipe_v2.pid")" 2>/dev/null; then
    echo "the screen already runs in $TREE (pid $(cat "$TREE/recipe_v2.pid"))" >&2
    exit 1
fi
. "$(dirname "$0")/pinned_worktree.sh"
pinned_worktree "$MAIN" "$TREE" "$COMMIT"

published=$MAIN/studies/results/recipe_v2/$NAME/runs
mkdir -p "$TREE/$OUT/$NAME/runs"
if [ -n "$(ls -A "$published" 2>/dev/null)" ]; then
    cp -n "$published"/* "$TREE/$OUT/$NAME/runs/"
fi

cd "$TREE"
export OMP_NUM_THREADS=1
# shellcheck disable=SC2086  # ARMS is a list
.venv/bin/python "$RUNNER" --protocol "$PROTOCOL/$NAME.json" --arms $ARMS \
    --out "$OUT/$NAME" --work "runs/recipe_v2/$NAME" --data "data/recipe_v2/$NAME" \
    > recipe_v2.log 2>&1 &
echo $! > recipe_v2.pid
echo "the screen runs in $TREE: tail -f $TREE/recipe_v2.log"
