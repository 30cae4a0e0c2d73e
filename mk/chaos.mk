# mk/chaos.mk: `make chaos` (docs/testing.md, "Chaos").  Not part of make test.
#
#   make chaos                       1,000,000 events under faults, on the
#                                    mock Kafka; report in docs/chaos.md
#   make chaos CHAOS_EVENTS=200000   fewer
#   make chaos CHAOS_KAFKA=real      the same against a three-node Apache
#                                    Kafka (test/kafka/kafka.sh), a node
#                                    SIGKILLed and restarted as the broker
#                                    fault; report in docs/chaos-real.md
#
# It installs the extension and starts a throwaway server, like make test.
# The defaults (events, partitions, outage) are the script's, per Kafka.
.PHONY: chaos
chaos:
	CHAOS_EVENTS=$(CHAOS_EVENTS) CHAOS_KAFKA=$(CHAOS_KAFKA) SANITIZE=$(SANITIZE) test/chaos/chaos.sh
