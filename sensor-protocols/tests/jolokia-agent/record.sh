#!/usr/bin/env bash
# Records the replies in sensor-protocols/tests/fixtures/jolokia/recorded/ from the real Jolokia request
# handler (Debian's libjolokia-core-java) served by JolokiaAgent.java on loopback. Bodies are written
# byte for byte as the agent sent them (curl -o). Needs java, javac, curl and
# /usr/share/java/jolokia-core.jar (apt-get install -y libjolokia-core-java).
#
# Usage: bash sensor-protocols/tests/jolokia-agent/record.sh [OUT_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../fixtures/jolokia/recorded}"
jar=/usr/share/java/jolokia-core.jar
cp="$jar:/usr/share/java/json-simple.jar"
[ -f "$jar" ] || { echo "record: $jar missing (apt-get install -y libjolokia-core-java)" >&2; exit 1; }

classes="$(mktemp -d)"
trap 'rm -rf "$classes"' EXIT
javac -d "$classes" -cp "$cp" "$here/JolokiaAgent.java"

# The agent exits when its stdin closes: feed it from a coprocess pipe we close at the end.
coproc AGENT { java -cp "$classes:$cp" JolokiaAgent 0 2>/dev/null; }
agent_in=${AGENT[1]}
read -r -t 30 banner <&"${AGENT[0]}" || { echo "record: agent did not start" >&2; exit 1; }
url="$(echo "$banner" | awk '{print $2}')"
echo "record: $banner" >&2
mkdir -p "$out"

post() { # FILE JSON
  curl -sS --max-time 10 -o "$out/$1" -H 'Content-Type: application/json' -X POST --data-binary "$2" "$url/"
}
get() { # FILE PATH
  curl -sS --max-time 10 -o "$out/$1" "$url$2"
}

post version.json '{"type":"version"}'
post read_single.json '{"type":"read","mbean":"akka:type=Cluster","attribute":"Leader"}'
post read_cluster_status.json '{"type":"read","mbean":"akka:type=Cluster","attribute":"ClusterStatus"}'
post bulk_read.json '[{"type":"read","mbean":"akka:type=Cluster","attribute":["ClusterStatus","Leader","Members","Unreachable","MemberStatus","Available"]},{"type":"read","mbean":"java.lang:type=Memory","attribute":"HeapMemoryUsage"},{"type":"read","mbean":"com.example:type=NotYetRegistered","attribute":"State"},{"type":"read","mbean":"akka:type=Cluster","attribute":"NoSuchAttribute"}]'
post read_pattern.json '{"type":"read","mbean":"akka:type=*","attribute":"Leader"}'
post whole_request_error.json '[{"type":"read","mbean":"akka:type=Cluster","attribute":"Leader"},{"type":"read","mbean":"not an object name"}]'
get get_read_escaped.json '/read/demo:type=Escaping,name=jmx!/rmi!!x%20y/Labels/a!/b'
get get_read_escaped_multi.json '/read/demo:type=Escaping,name=jmx!/rmi!!x%20y/Labels,Url'

exec {agent_in}>&-
wait "$AGENT_PID" 2>/dev/null || true
echo "record: wrote $(ls "$out" | wc -l) files to $out" >&2
