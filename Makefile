# evcollector: PGXS build, tests and demo.
#
#   make            build the extension (protoc-c runs as part of the build)
#   make install    install it into the PostgreSQL found by pg_config
#   make test       install what is missing, build, run every test layer
#   make demo       run the end-to-end demo on a throwaway server
#   make installcheck   pg_regress against a server you run yourself

EXTENSION = evcollector
MODULE_big = evcollector

PROTO_C = proto/evcollector.pb-c.c
PROTO_H = proto/evcollector.pb-c.h
SRCS = src/evcollector.c $(sort $(wildcard src/*/*.c))
OBJS = $(SRCS:.c=.o) $(PROTO_C:.c=.o)

# Migration scripts: the base install script plus the upgrade chain.
DATA = $(sort $(wildcard sql/evcollector--*.sql))

# pg_regress tests live in test/regress/{sql,expected}; they run in name
# order, and their output goes to .build/regress, never beside the sources.
REGRESS = $(sort $(basename $(notdir $(wildcard test/regress/sql/*.sql))))
REGRESS_OPTS = --load-extension=plpgsql --inputdir=test/regress --outputdir=.build/regress

PG_CONFIG ?= pg_config

EVC_VERSION := $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" evcollector.control)
PG_CPPFLAGS = -Iproto -Isrc -DEVC_VERSION_STR=\"$(EVC_VERSION)\"
SHLIB_LINK = -lrdkafka -lcurl -lprotobuf-c -lz

# Test tools are built into .build/bin, away from their sources in test/tools.
TOOLS_BIN = .build/bin
TOOLS = $(TOOLS_BIN)/kafka_mock $(TOOLS_BIN)/evc-produce $(TOOLS_BIN)/evc-listen $(TOOLS_BIN)/evc-kafka-settled

EXTRA_CLEAN = $(PROTO_C) $(PROTO_H) .build

# No LLVM bitcode: JIT inlining of our C is of no use, and it would need clang.
override with_llvm = no

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Each capability's extra targets and flags (fuzz, sanitize, chaos, gateway)
# live in a make fragment of its own.
-include $(sort $(wildcard mk/*.mk))

# Our own sources are held to -Wall -Wextra -Werror.  The generated protobuf
# glue is not ours, so it gets PostgreSQL's flags only.  The -Wno-* below
# silence warnings that PostgreSQL's own headers and fmgr macros trigger.
EVC_WARNINGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers
$(SRCS:.c=.o): CFLAGS += $(EVC_WARNINGS)
$(SRCS:.c=.o): $(PROTO_H) $(wildcard src/*/*.h)
src/evcollector.o: evcollector.control

# The generated glue's symbols (evcollector__event__pack, ...) are not
# prefixed evc_; they stay inside the library so that no other library loaded
# into the same server can collide with them.
$(PROTO_C:.c=.o): CFLAGS += -fvisibility=hidden

$(PROTO_C) $(PROTO_H) &: proto/evcollector.proto
	protoc-c --proto_path=proto --c_out=proto $<

tools: $(TOOLS)

$(TOOLS_BIN):
	mkdir -p $@

# The test peer that hosts librdkafka's mock cluster.
$(TOOLS_BIN)/kafka_mock: test/tools/kafka_mock.c | $(TOOLS_BIN)
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $< -lrdkafka -lpthread

# Test tool that produces protobuf events (and garbage) fast.
$(TOOLS_BIN)/evc-produce: test/tools/evc-produce.c $(PROTO_C) $(PROTO_H) | $(TOOLS_BIN)
	$(CC) -O2 -Wall -Wextra -Werror -Iproto -o $@ test/tools/evc-produce.c $(PROTO_C) -lrdkafka -lprotobuf-c

# Test tool that waits for a topic's transactions to be marked (kafka-dump).
$(TOOLS_BIN)/evc-kafka-settled: test/tools/evc-kafka-settled.c | $(TOOLS_BIN)
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $< -lrdkafka

# Test tool that LISTENs and prints each notification with its arrival time.
$(TOOLS_BIN)/evc-listen: test/tools/evc-listen.c | $(TOOLS_BIN)
	$(CC) -O2 -Wall -Wextra -Werror -I$(shell $(PG_CONFIG) --includedir) -o $@ $< -L$(shell $(PG_CONFIG) --libdir) -lpq

.PHONY: test demo deps tools
# Only what make test and make demo would install first (Debian and npm packages).
deps:
	bash -c '. test/lib.sh && evc_install_deps'

test:
	test/run

demo:
	test/demo

# pg_regress writes its results under .build/regress.
installcheck: | .build/regress
.build/regress:
	mkdir -p $@
