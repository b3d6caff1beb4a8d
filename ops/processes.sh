# The services ops/ starts in the background and finds again by pid file (sourced by kafka.sh
# and orthanc.sh).

# Print the pid in pid file $1 and succeed when that process is alive and its command line
# matches the grep pattern $2: a pid the kernel recycled for some other process must not be
# mistaken for the service (and then be reported as running, or be killed).
pid_running_as() {
  [[ -f "$1" ]] || return 1
  local pid; pid="$(cat "$1")"
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$2"; then
    echo "$pid"; return 0
  fi
  return 1
}
