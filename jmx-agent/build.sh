#!/usr/bin/env bash
# Builds jmx-agent/build/chaos-jmx-agent.jar, the agent the recorder attaches to JVMs without one:
# the sources under src/ compiled with the host's JDK (Debian's default-jdk-headless) against
# Debian's jolokia-core and json-simple jars, both merged into the agent jar (the target JVM gets
# nothing else). Nothing is downloaded. Idempotent: rebuilt only when a source or jar changed.
#
# Usage: jmx-agent/build.sh [OUT.jar]    (prints the jar's path)
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-$DIR/build/chaos-jmx-agent.jar}"
JOLOKIA=/usr/share/java/jolokia-core.jar
JSON=/usr/share/java/json-simple.jar
for f in "$JOLOKIA" "$JSON"; do
  [ -f "$f" ] || { echo "jmx-agent/build.sh: $f missing (apt-get install libjolokia-core-java libjson-simple-java)" >&2; exit 5; }
done
for t in javac jar; do
  command -v "$t" >/dev/null 2>&1 || { echo "jmx-agent/build.sh: $t missing (apt-get install default-jdk-headless)" >&2; exit 5; }
done
SUM="$(cat "$0" $(find "$DIR/src" -name '*.java' | sort) "$(readlink -f "$JOLOKIA")" "$(readlink -f "$JSON")" | sha256sum | cut -d' ' -f1)"
if [ -f "$OUT" ] && [ "$(cat "$OUT.sha256" 2>/dev/null || true)" = "$SUM" ]; then
  echo "$OUT"
  exit 0
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/classes" "$(dirname "$OUT")"
# --release 8: the agent runs in any JVM from Java 8 on (the JDK's HTTP server and instrument API).
javac -nowarn --release 8 -Xlint:-options -cp "$JOLOKIA:$JSON" -d "$WORK/classes" $(find "$DIR/src" -name '*.java')
(cd "$WORK/classes" && jar xf "$JOLOKIA" && jar xf "$JSON")
rm -rf "$WORK/classes/META-INF"
cat > "$WORK/manifest" <<MF
Agent-Class: org.chaostrace.jmxagent.Agent
Premain-Class: org.chaostrace.jmxagent.Agent
Implementation-Title: chaos-trace jmx agent
MF
jar cfm "$OUT.tmp" "$WORK/manifest" -C "$WORK/classes" .
mv -f "$OUT.tmp" "$OUT"
echo "$SUM" > "$OUT.sha256"
echo "$OUT"
