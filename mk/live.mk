# mk/live.mk: the live rooms' extra targets (issue 17).
#
#   make live-packet-test   the codec's unit tests (TAP), as a frontend program
#   make fuzz-live          the codec's libFuzzer target, 60 s (FUZZ_SECS=...)
#
# The codec (src/gateway/live_packet.c) is built a second time with
# -DFRONTEND against libpgcommon, so that it runs outside the server.
# (clang: PostgreSQL's headers name gcc's gnu_printf, which clang ignores.)

LIVE_FE_CFLAGS = -DFRONTEND -I$(shell $(PG_CONFIG) --includedir-server) -Isrc \
	-Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers
LIVE_FE_LIBS = -L$(shell $(PG_CONFIG) --pkglibdir) -lpgcommon -lpgport
FUZZ_SECS ?= 60

$(TOOLS_BIN)/live-packet-test: test/live/packet_test.c src/gateway/live_packet.c src/gateway/live_packet.h | $(TOOLS_BIN)
	$(CC) -O1 -g $(LIVE_FE_CFLAGS) -o $@ test/live/packet_test.c src/gateway/live_packet.c $(LIVE_FE_LIBS)

$(TOOLS_BIN)/fuzz-live-packet: test/fuzz/live_packet.c src/gateway/live_packet.c src/gateway/live_packet.h | $(TOOLS_BIN)
	clang -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all $(LIVE_FE_CFLAGS) -Wno-ignored-attributes \
		-o $@ test/fuzz/live_packet.c src/gateway/live_packet.c $(LIVE_FE_LIBS)

live-packet-test: $(TOOLS_BIN)/live-packet-test
	$(TOOLS_BIN)/live-packet-test

fuzz-live: $(TOOLS_BIN)/fuzz-live-packet
	mkdir -p .build/fuzz/live_packet
	$(TOOLS_BIN)/fuzz-live-packet -max_total_time=$(FUZZ_SECS) -max_len=4096 \
		.build/fuzz/live_packet test/fuzz/corpus/live_packet

.PHONY: live-packet-test fuzz-live

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
