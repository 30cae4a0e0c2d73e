# mk/chaos.mk: `make chaos` (docs/testing.md, "Chaos").  Not part of make test.
#
#   make chaos                      1,000,000 events under faults
#   make chaos CHAOS_EVENTS=200000  fewer
#
# It installs the extension and starts a throwaway server, like make test;
# its report goes to docs/chaos.md.
.PHONY: chaos
chaos:
	CHAOS_EVENTS=$(or $(CHAOS_EVENTS),1000000) SANITIZE=$(SANITIZE) test/chaos/chaos.sh
