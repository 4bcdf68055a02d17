#!/usr/bin/env bash
# A new user's first session with pixsearch, recorded with tmux capture-pane (issue #20):
# index 1000 photos (interrupted with Ctrl-C, then resumed), info, searches, a filter, a
# blocked query, a gallery with --open, a Russian query, --paths-only, no results.
#
#   benchmarks/record_cli_session.sh [PHOTOS] [OUT]
#   (defaults: ../shared/data/practicum/train_images, cli-session.txt; run with the venv active)
set -u
photos=$(realpath "${1:-../shared/data/practicum/train_images}")
out=$(realpath -m "${2:-cli-session.txt}")
home=$(mktemp -d /tmp/pixsearch-newuser.XXXXXX)
mkdir "$home/Photos" && cp "$photos"/*.jpg "$home/Photos/"
bin=$(dirname "$(command -v pixsearch)")
S=pixsearch-newuser
tmux kill-session -t $S 2>/dev/null
tmux -u new-session -d -s $S -x 110 -y 50 \
  "env -i HOME=$home LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM=xterm-256color PATH=$bin:/usr/bin:/bin PS1='\$ ' bash --norc --noprofile"
tmux set-option -t $S history-limit 10000 >/dev/null
send() { tmux send-keys -t $S "$1" Enter; }
wait_prompt() {  # until the shell shows its prompt again (at most $1 seconds)
  for _ in $(seq 1 "${1:-120}"); do
    sleep 1
    tmux capture-pane -p -t $S | grep -v '^$' | tail -1 | grep -q '^\$ *$' && return
  done
}
sleep 1; send 'cd ~'
send 'pixsearch --help'; wait_prompt
send 'ls Photos | wc -l'; wait_prompt
send 'pixsearch index Photos'; sleep 2.5; tmux send-keys -t $S C-c; wait_prompt
send 'echo "exit code $?"'; wait_prompt
send 'pixsearch index Photos'; wait_prompt 300
send 'pixsearch info'; wait_prompt
send 'pixsearch search "a dog leaps to catch a frisbee" -k 5'; wait_prompt
send 'pixsearch search "a man climbing a rock" -k 3 --where "width>=200" --where "format=jpeg"'; wait_prompt
send 'pixsearch search "children playing in the park"; echo "exit code $?"'; wait_prompt
send 'pixsearch search "a snowy mountain" -k 8 --html mountains.html --open; echo "exit code $?"'; wait_prompt
send 'pixsearch search "собака бежит по снегу" -k 3'; wait_prompt
send 'pixsearch search "a dog" --paths-only -k 3 | xargs ls -la'; wait_prompt
send 'pixsearch search "zzzz" --where "width>=99999"; echo "exit code $?"'; wait_prompt
tmux capture-pane -p -J -S - -t $S > "$out"
tmux kill-session -t $S
rm -rf "$home"
echo "recorded: $out"
