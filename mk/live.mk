# mk/live.mk: the live rooms' extra targets (issue 17).
#
#   make live-packet-test   the codec's unit tests (TAP), as a frontend program
#
# The codec (src/gateway/live_packet.c) is built a second time with
# -DFRONTEND against libpgcommon, so that it runs outside the server.
# Its libFuzzer target is test/fuzz/fuzz_live_packet.c, built and run by
# mk/fuzz.mk with the others (make fuzz, test/run fuzz).
# (clang: PostgreSQL's headers name gcc's gnu_printf, which clang ignores.)

LIVE_FE_CFLAGS = -DFRONTEND -I$(shell $(PG_CONFIG) --includedir-server) -Isrc \
	-Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers
LIVE_FE_LIBS = -L$(shell $(PG_CONFIG) --pkglibdir) -lpgcommon -lpgport

$(TOOLS_BIN)/live-packet-test: test/live/packet_test.c src/gateway/live_packet.c src/gateway/live_packet.h | $(TOOLS_BIN)
	$(CC) -O1 -g $(LIVE_FE_CFLAGS) -o $@ test/live/packet_test.c src/gateway/live_packet.c $(LIVE_FE_LIBS)

live-packet-test: $(TOOLS_BIN)/live-packet-test
	$(TOOLS_BIN)/live-packet-test

.PHONY: live-packet-test

# The /live and /status pages, served by the gateway from
# share/extension/evcollector_pages (plain files, no build step).
LIVE_PAGES = $(wildcard src/gateway/pages/*)
LIVE_PAGES_DIR = $(DESTDIR)$(datadir)/extension/evcollector_pages

install: install-live-pages
install-live-pages:
	$(MKDIR_P) '$(LIVE_PAGES_DIR)'
	$(INSTALL_DATA) $(LIVE_PAGES) '$(LIVE_PAGES_DIR)/'
.PHONY: install-live-pages

# bench/live: 10,000 WebSocket clients over 1,000 rooms, and a Node.js ws baseline.
bench-live:
	flock /tmp/evc-test.lock bench/live/run
.PHONY: bench-live
