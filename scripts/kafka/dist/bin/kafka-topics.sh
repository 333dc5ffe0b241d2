#!/usr/bin/env bash
# Licensed under the Apache License, Version 2.0. Same as upstream's kafka-topics.sh.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.TopicCommand "$@"
