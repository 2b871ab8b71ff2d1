# shellcheck shell=bash
# Debian rootfs images without an image registry, shared by scripts/build-{zookeeper,redis,otel}-image.sh
# (sourced, not run). Each builder sets BUILDER (its file name, for messages) and calls, in order:
#   debian_source                       SUITE and MIRROR: DEBIAN_SUITE/DEBIAN_MIRROR, else the
#                                       host's (os-release, deb822 or one-line apt sources), else
#                                       bookworm from deb.debian.org
#   recipe_sum WORDS...                 prints the sha256 of WORDS (the recipe hash of an image)
#   image_label IMAGE LABEL             prints IMAGE's LABEL, empty when there is no such image
#   build_lock LOCKNAME                 one build at a time (/var/tmp/.LOCKNAME.lock, with flock)
#   debootstrap_rootfs PREFIX PACKAGES  checks root and debootstrap, then a minbase rootfs with
#                                       the comma-separated PACKAGES at $ROOTFS (in a temporary
#                                       /var/tmp/PREFIX.XXXXXX, $WORK, removed on exit)
#   trim_rootfs --zoneinfo|--keep-zoneinfo
#                                       removes docs, man pages, locales, apt caches and logs (and
#                                       with --zoneinfo every time zone but UTC)
#   import_rootfs TAG CHANGE...         docker import of the rootfs as TAG, each CHANGE a Dockerfile
#                                       line (`LABEL k=v`, `ENV K=V`) besides the default PATH
# Failures print `BUILDER: message` on stderr and exit 5.

die() {
  echo "$BUILDER: $*" >&2
  exit 5
}

debian_source() {
  SUITE="${DEBIAN_SUITE:-}"
  MIRROR="${DEBIAN_MIRROR:-}"
  if [ -z "$SUITE" ] && [ -r /etc/os-release ]; then
    SUITE="$(. /etc/os-release; echo "${VERSION_CODENAME:-}")"
  fi
  SUITE="${SUITE:-bookworm}"
  if [ -z "$MIRROR" ]; then
    MIRROR="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1 || true)"
  fi
  if [ -z "$MIRROR" ]; then
    MIRROR="$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -1 || true)"
  fi
  MIRROR="${MIRROR:-http://deb.debian.org/debian}"
}

recipe_sum() {
  printf '%s' "$*" | sha256sum | cut -d' ' -f1
}

image_label() {
  docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

build_lock() {
  if command -v flock >/dev/null 2>&1; then
    exec 9>"/var/tmp/.$1.lock"
    flock 9
  fi
}

debootstrap_rootfs() {
  command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found (apt-get install debootstrap, or scripts/setup.sh)"
  [ "$(id -u)" = 0 ] || die "debootstrap needs root"
  WORK="$(mktemp -d "/var/tmp/$1.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT
  ROOTFS="$WORK/rootfs"
  START=$(date +%s)
  echo "$BUILDER: debootstrap $SUITE from $MIRROR ($2)" >&2
  if ! debootstrap --variant=minbase --include="$2" "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
    tail -30 "$WORK/debootstrap.log" >&2
    die "debootstrap failed"
  fi
}

trim_rootfs() {
  local r="$ROOTFS"
  rm -rf "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/var/cache/apt/* \
    "$r"/var/lib/apt/lists/* "$r"/var/log/*.log "$r"/usr/share/locale/*
  if [ "$1" = --zoneinfo ]; then
    find "$r/usr/share/zoneinfo" -mindepth 1 -maxdepth 1 ! -name UTC ! -name Etc -exec rm -rf {} + 2>/dev/null || true
  fi
}

import_rootfs() {
  local tag="$1" size
  shift
  local changes=(-c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
  for c in "$@"; do
    changes+=(-c "$c")
  done
  tar -C "$ROOTFS" --numeric-owner -c . | docker import "${changes[@]}" - "$tag" >/dev/null
  size="$(docker image inspect -f '{{ .Size }}' "$tag")"
  echo "$tag built ($((size / 1048576)) MiB, $(( $(date +%s) - START )) s)"
}
