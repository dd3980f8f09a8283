#!/bin/sh
# Recipe v2's screen (studies/results/recipe_v2/screening.md), started or resumed on this machine or a new
# one: a git worktree at the commit the screen is pinned to, the runs already published under
# studies/results/recipe_v2/NAME/runs restored into its results, then one 1-thread runner in the
# background through each screening protocol in turn.
#     sh studies/scripts/recipe_v2.sh [TREE]        # default ../recipe_v2; log in TREE/recipe_v2.log
# The tree keeps the layout of its commit: the runner and protocols there are bench/ and docs/.
set -eu
COMMIT=9e0f4ac2979a33d0275e977c7b4f5fdf6da3c445
MAIN=$(git rev-parse --show-toplevel)
TREE=$(realpath -m "${1:-$MAIN/../recipe_v2}")
NAMES="warmup_36ep"

if [ -f "$TREE/recipe_v2.pid" ] && kill -0 "$(cat "$TREE/recipe_v2.pid")" 2>/dev/null; then
    echo "the screen already runs in $TREE (pid $(cat "$TREE/recipe_v2.pid"))" >&2
    exit 1
fi
. "$(dirname "$0")/pinned_worktree.sh"
pinned_worktree "$MAIN" "$TREE" "$COMMIT"

for name in $NAMES; do
    published=$MAIN/studies/results/recipe_v2/$name/runs
    mkdir -p "$TREE/bench/results/recipe_v2/$name/runs"
    if [ -n "$(ls -A "$published" 2>/dev/null)" ]; then
        cp -n "$published"/* "$TREE/bench/results/recipe_v2/$name/runs/"
    fi
done

cd "$TREE"
export OMP_NUM_THREADS=1
(for name in $NAMES; do
    .venv/bin/python bench/study_trees.py --protocol "docs/recipe_v2/$name.json" --arms nobias \
        --out "bench/results/recipe_v2/$name" --work "runs/recipe_v2/$name" \
        --data "data/recipe_v2/$name" || exit 1
done) > recipe_v2.log 2>&1 &
echo $! > recipe_v2.pid
echo "the screen runs in $TREE: tail -f $TREE/recipe_v2.log"
