# mk/kreal.mk: build flags of the JSON Schema validator (src/jsonschema).
#
# The validator's evaluation is a few small recursive functions called for
# every value of every instance (bench/validate).  gcc's -O3 inlines and
# unrolls more of them than PGXS's -O2; -fno-semantic-interposition lets it
# inline and call directly the folder's own global functions within a file
# (the library is never interposed: its symbols are evc_-prefixed).  Only
# this folder: the rest of the extension keeps PostgreSQL's flags.
EVC_JSONSCHEMA_OBJS = $(patsubst %.c,%.o,$(wildcard src/jsonschema/*.c))
$(EVC_JSONSCHEMA_OBJS): CFLAGS += -O3 -fno-semantic-interposition
