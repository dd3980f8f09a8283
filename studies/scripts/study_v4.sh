#!/bin/sh
# Study v4's 36-epoch and hard-variant protocols, started or resumed on this machine or a new one
# (studies/results/study_v4/protocol.md): a git worktree at the commit every study v4 run is pinned to, the
# runs already published under studies/results/study_v4/NAME (records, and matches where a run may still be
# final) restored into its results, then one runner per trained arm in the background, each
# through 36 epochs, then the hard variant. Publish progress from the main tree with
# studies/scripts/study_trees_report.py --out TREE/bench/results/study_v4/NAME --publish studies/results/study_v4/NAME.
#     sh studies/scripts/study_v4.sh [TREE]        # default ../study_v4; logs in TREE/study_v4_*.log
# The tree keeps the layout of its commit: the runner and protocols there are bench/ and docs/.
set -eu
COMMIT=01e573ba454682e9382a339576dc86ce0c1623ee
MAIN=$(git rev-parse --show-toplevel)
TREE=$(realpath -m "${1:-$MAIN/../study_v4}")
NAMES="shapes_36ep hard_12ep"

PIDS=$TREE/study_v4.pids
for pid in $(cat "$PIDS" 2>/dev/null); do  # two runners of one arm would share its run folders
    if kill -0 "$pid" 2>/dev/null; then
        echo "study v4 already runs in $TREE (pid $pid)" >&2
        exit 1
    fi
done

. "$(dirname "$0")/pinned_worktree.sh"
pinned_worktree "$MAIN" "$TREE" "$COMMIT"

for name in $NAMES; do
    out=$TREE/bench/results/study_v4/$name
    for sub in runs matches; do
        published=$MAIN/studies/results/study_v4/$name/$sub
        mkdir -p "$out/$sub"
        if [ -n "$(ls -A "$published" 2>/dev/null)" ]; then cp -n "$published"/* "$out/$sub/"; fi
    done
done

cd "$TREE"
export OMP_NUM_THREADS=1  # one core per runner
study() {  # ARM PROTOCOL-NAME [runner options]
    arm=$1 name=$2
    shift 2
    .venv/bin/python bench/study_trees.py --protocol "docs/study_v4/$name.json" --arms "$arm" \
        --out "bench/results/study_v4/$name" --work "runs/study_v4/$name" \
        --data "data/study_v4/$name" "$@"
}
for name in $NAMES; do  # both runners would otherwise write the same dataset at once
    study nobias "$name" --plan
done
: > "$PIDS"
for arm in nobias batchnorm_reparam; do
    (for name in $NAMES; do study "$arm" "$name" || exit 1; done) > "study_v4_$arm.log" 2>&1 &
    echo $! >> "$PIDS"
done
echo "study v4 running in $TREE: tail -f $TREE/study_v4_*.log"
