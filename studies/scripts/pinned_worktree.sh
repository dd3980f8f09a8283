# Sourced by the scripts that start a study: pinned_worktree MAIN TREE COMMIT makes TREE a git
# worktree of MAIN at COMMIT (or checks that it is one), then sets it up (make setup).
pinned_worktree() {
    [ -d "$2" ] || git -C "$1" worktree add --detach "$2" "$3"
    if [ "$(git -C "$2" rev-parse HEAD)" != "$3" ]; then
        echo "$2 is not at $3" >&2
        exit 1
    fi
    make -C "$2" setup
}
