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
SRCS = $(sort $(wildcard src/*.c))
OBJS = $(SRCS:.c=.o) $(PROTO_C:.c=.o)

# Migration scripts: the base install script plus the upgrade chain.
DATA = $(sort $(wildcard sql/evcollector--*.sql))

# Every other file in sql/ is a pg_regress test, run in name order.
REGRESS = $(sort $(basename $(notdir $(filter-out sql/evcollector--%,$(wildcard sql/*.sql)))))
REGRESS_OPTS = --load-extension=plpgsql

PG_CONFIG ?= pg_config

EVC_VERSION := $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" evcollector.control)
PG_CPPFLAGS = -Iproto -Isrc -DEVC_VERSION_STR=\"$(EVC_VERSION)\"
SHLIB_LINK = -lrdkafka -lcurl -lprotobuf-c -lz

EXTRA_CLEAN = $(PROTO_C) $(PROTO_H) test/kafka_mock test/helpers/evc-produce test/helpers/evc-listen results regression.diffs regression.out

# No LLVM bitcode: JIT inlining of our C is of no use, and it would need clang.
override with_llvm = no

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Our own sources are held to -Wall -Wextra -Werror.  The generated protobuf
# glue is not ours, so it gets PostgreSQL's flags only.  The -Wno-* below
# silence warnings that PostgreSQL's own headers and fmgr macros trigger.
EVC_WARNINGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers
$(SRCS:.c=.o): CFLAGS += $(EVC_WARNINGS)
$(SRCS:.c=.o): $(PROTO_H) $(wildcard src/*.h)
src/evcollector.o: evcollector.control

$(PROTO_C) $(PROTO_H) &: proto/evcollector.proto
	protoc-c --proto_path=proto --c_out=proto $<

# The test peer that hosts librdkafka's mock cluster.
test/kafka_mock: test/kafka_mock.c
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $< -lrdkafka -lpthread

# Test helper that produces protobuf events (and garbage) fast.
test/helpers/evc-produce: test/evc-produce.c $(PROTO_C) $(PROTO_H)
	$(CC) -O2 -Wall -Wextra -Werror -Iproto -o $@ test/evc-produce.c $(PROTO_C) -lrdkafka -lprotobuf-c

# Test helper that LISTENs and prints each notification with its arrival time.
test/helpers/evc-listen: test/evc-listen.c
	$(CC) -O2 -Wall -Wextra -Werror -I$(shell $(PG_CONFIG) --includedir) -o $@ $< -L$(shell $(PG_CONFIG) --libdir) -lpq

.PHONY: test demo deps
deps:
	test/install-deps

test:
	test/run

demo:
	test/demo
