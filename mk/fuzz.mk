# mk/fuzz.mk: the libFuzzer targets of test/fuzz (see test/fuzz/README.md).
#
#   make fuzz-build              build every target into .build/fuzz/bin
#   make fuzz FUZZ_TIME=60       run each target for 60 s on its corpus, one
#                                at a time, and print libFuzzer's summary
#   make fuzz-regress            run each target once over its corpus (the
#                                "fuzz" layer of test/run does this)
#   make fuzz-differential       the validator against Python's jsonschema,
#                                FUZZ_CASES cases (default 20000)
#
# A target is test/fuzz/fuzz_<name>.c plus a seed corpus in
# test/fuzz/corpus/<name>/; nothing else needs listing.  Each links
# evcollector's sources, built again with the sanitizers, and the server's
# own objects, compiled from the LLVM bitcode that Debian's postgresql-15
# ships for JIT inlining.

FUZZ_CC ?= clang-14
FUZZ_TIME ?= 60
FUZZ_CASES ?= 20000
FUZZ_NICE ?= nice -n 19
FUZZ_B = .build/fuzz
FUZZ_TARGETS = $(patsubst test/fuzz/fuzz_%.c,%,$(sort $(wildcard test/fuzz/fuzz_*.c)))
FUZZ_BINS = $(addprefix $(FUZZ_B)/bin/,$(FUZZ_TARGETS))

FUZZ_PG_BITCODE = $(shell $(PG_CONFIG) --pkglibdir)/bitcode/postgres
FUZZ_PG_LIBDIR = $(shell $(PG_CONFIG) --pkglibdir)
# What the server binary itself links, by exact file name.
FUZZ_PG_SYSLIBS = $(shell ldd $(shell $(PG_CONFIG) --bindir)/postgres | awk '/=>/ {print "-l:" $$1}' | grep -v -e libc.so -e libm.so)

FUZZ_SAN = -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS = -g -O1 -fno-omit-frame-pointer -ffunction-sections -fdata-sections \
	$(FUZZ_SAN) -fsanitize=fuzzer-no-link \
	$(shell $(PG_CONFIG) --cppflags) -I$(shell $(PG_CONFIG) --includedir-server) -Iproto -Isrc -Itest/fuzz/harness \
	-DEVC_VERSION_STR=\"$(EVC_VERSION)\" -DFUZZ_DOCUMENTS_DEFAULT=\"$(CURDIR)/$(FUZZ_B)/documents\" \
	-DFUZZ_PG_BINDIR=\"$(shell $(PG_CONFIG) --bindir)\" \
	-Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers -Wno-ignored-attributes \
	-Wno-compound-token-split-by-macro -Wno-unknown-warning-option

# evcollector's sources, instrumented; an archive, so that a target links
# only what it reaches.
FUZZ_EVC_OBJS = $(patsubst %.c,$(FUZZ_B)/obj/%.o,$(SRCS) $(PROTO_C))
FUZZ_HARNESS_OBJS = $(FUZZ_B)/obj/harness/fuzz_pg.o $(FUZZ_B)/obj/harness/pg_missing.o

$(FUZZ_B)/obj/%.o: %.c $(PROTO_H) $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

# The generated protobuf glue is not ours: no -Werror for it.
$(FUZZ_B)/obj/$(PROTO_C:.c=.o): $(PROTO_C) $(PROTO_H)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(filter-out -Werror,$(FUZZ_CFLAGS)) -c $< -o $@

$(FUZZ_B)/obj/harness/%.o: test/fuzz/harness/%.c test/fuzz/harness/fuzz_pg.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_B)/libevc.a: $(FUZZ_EVC_OBJS)
	rm -f $@ && ar rcs $@ $^

# The server's own objects: every backend file but main.c, compiled from
# the installed bitcode, and aset.c, which the harness replaces (fuzz_pg.c
# says why).  Not instrumented: the code under test is evcollector's.
$(FUZZ_B)/libpgserver.a: $(FUZZ_PG_BITCODE)/utils/mmgr/mcxt.bc
	@test -d $(FUZZ_PG_BITCODE) || { echo "no server bitcode in $(FUZZ_PG_BITCODE) (postgresql-15 ships it)"; exit 1; }
	rm -rf $(FUZZ_B)/pg && mkdir -p $(FUZZ_B)/pg
	cd $(FUZZ_PG_BITCODE) && find . -name '*.bc' ! -path ./main/main.bc ! -path ./utils/mmgr/aset.bc | \
		sed 's|^\./||' | xargs -P2 -I{} sh -c \
		'$(FUZZ_CC) -c -O1 -fPIC -ffunction-sections -fdata-sections -Wno-override-module "$$1" -o "$$2/$$(echo "$$1" | tr / _ | sed "s/\.bc$$/.o/")"' \
		sh {} $(CURDIR)/$(FUZZ_B)/pg
	rm -f $@ && ar rcs $@ $(FUZZ_B)/pg/*.o

# src/common and src/port: Debian ships only their frontend builds.  Their
# members that the server defines itself (memory, files) are left out, so
# that the server's own definitions are the ones linked.
FUZZ_COMMON_SKIP = fe_memutils.o file_utils.o restricted_token.o sprompt.o
$(FUZZ_B)/libpgcommon.a: $(FUZZ_PG_LIBDIR)/libpgcommon.a
	rm -rf $(FUZZ_B)/common && mkdir -p $(FUZZ_B)/common
	cd $(FUZZ_B)/common && ar x $< && rm -f $(FUZZ_COMMON_SKIP)
	rm -f $@ && ar rcs $@ $(FUZZ_B)/common/*.o

# (a target may include a source file itself: sink_decode includes sinks.c)
$(FUZZ_B)/obj/test/fuzz/%.o: test/fuzz/%.c test/fuzz/harness/fuzz_pg.h $(PROTO_H) $(wildcard src/*/*.h) $(SRCS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_B)/bin/%: $(FUZZ_B)/obj/test/fuzz/fuzz_%.o $(FUZZ_HARNESS_OBJS) $(FUZZ_B)/libevc.a $(FUZZ_B)/libpgserver.a $(FUZZ_B)/libpgcommon.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -Wl,--gc-sections -o $@ $< $(FUZZ_HARNESS_OBJS) \
		$(FUZZ_B)/libevc.a $(FUZZ_B)/libpgserver.a $(FUZZ_B)/libpgcommon.a $(FUZZ_PG_LIBDIR)/libpgport.a \
		-lrdkafka -lcurl -lprotobuf-c -lwebsockets -lz $(FUZZ_PG_SYSLIBS) -lm

# The documents a fuzzed $ref may name (fuzz_pg.c): the test suite's
# remotes, and the draft-07 meta-schema as the install script stores it,
# with the change the 0.7.0 upgrade makes to it ("enum").
FUZZ_SUITE = /usr/share/json-schema-test-suite
$(FUZZ_B)/documents/.stamp: sql/evcollector--0.1.0--0.2.0.sql mk/fuzz.mk
	rm -rf $(FUZZ_B)/documents && mkdir -p $(FUZZ_B)/documents/json-schema.org/draft-07
	cp -r $(FUZZ_SUITE)/remotes $(FUZZ_B)/documents/localhost:1234
	sed -n '/^(.http:\/\/json-schema.org\/draft-07\/schema., $$meta\$$/,/^}\$$meta\$$/p' $< | \
		sed -e '1s/.*\$$meta\$$//' -e '$$s/\$$meta\$$.*//' | \
		jq '.properties.enum = {"type": "array", "items": true}' >$(FUZZ_B)/documents/json-schema.org/draft-07/schema
	test -s $(FUZZ_B)/documents/json-schema.org/draft-07/schema
	touch $@

# The validator as a filter, for the differential check (no libFuzzer).
$(FUZZ_B)/bin/validate_cases: $(FUZZ_B)/obj/test/fuzz/tools/validate_cases.o $(FUZZ_HARNESS_OBJS) $(FUZZ_B)/libevc.a $(FUZZ_B)/libpgserver.a $(FUZZ_B)/libpgcommon.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_SAN) -Wl,--gc-sections -o $@ $< $(FUZZ_HARNESS_OBJS) \
		$(FUZZ_B)/libevc.a $(FUZZ_B)/libpgserver.a $(FUZZ_B)/libpgcommon.a $(FUZZ_PG_LIBDIR)/libpgport.a \
		-lrdkafka -lcurl -lprotobuf-c -lwebsockets -lz $(FUZZ_PG_SYSLIBS) -lm

.PHONY: fuzz fuzz-build fuzz-regress fuzz-differential
fuzz-build: $(FUZZ_BINS) $(FUZZ_B)/bin/validate_cases $(FUZZ_B)/documents/.stamp

fuzz-regress: fuzz-build
	test/fuzz/run.sh regress $(FUZZ_TARGETS)

fuzz: fuzz-build
	FUZZ_TIME=$(FUZZ_TIME) FUZZ_NICE="$(FUZZ_NICE)" test/fuzz/run.sh fuzz $(FUZZ_TARGETS)
	FUZZ_CASES=$(FUZZ_CASES) FUZZ_SEED=$${FUZZ_SEED:-$$(date +%s)} test/fuzz/run.sh differential

fuzz-differential: $(FUZZ_B)/bin/validate_cases $(FUZZ_B)/documents/.stamp
	FUZZ_CASES=$(FUZZ_CASES) FUZZ_SEED=$${FUZZ_SEED:-$$(date +%s)} test/fuzz/run.sh differential

# routes_ops.c includes the OpenAPI document that mk/gwreg.mk generates
# (its GWREG_GEN, spelt out: that file is read after this one).
$(FUZZ_B)/obj/src/gateway/routes_ops.o: .build/gateway/openapi_json.inc
$(FUZZ_B)/obj/src/gateway/routes_ops.o: FUZZ_CFLAGS += -I.build/gateway
