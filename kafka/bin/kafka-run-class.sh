#!/usr/bin/env bash
# Runs a Kafka main class from the project's jars (kafka/lib), like Kafka's own bin/kafka-run-class.sh.
here="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -f "$here/lib/kafka_2.13-4.3.1.jar" ]; then
  echo "kafka-run-class.sh: the Kafka jars are missing in $here/lib: run 'make setup'" >&2
  exit 2
fi
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} -Dlog4j2.configurationFile="$here/log4j2-tools.properties" -cp "$here/lib/*" "$@"
