# mk/gwreg.mk: the gateway's schema-registry and operations routes.
#
# src/gateway/openapi.json is served by GET /openapi.json.  It is kept in
# the repository as JSON and turned into a C string literal at build time,
# so the document served is always the one committed.  sed escapes
# backslashes and quotes and ends each line with \n; nothing else in a JSON
# text needs escaping inside a C string.

GWREG_GEN = .build/gateway

$(GWREG_GEN)/openapi_json.inc: src/gateway/openapi.json
	@mkdir -p $(GWREG_GEN)
	python3 -c 'import json,sys; json.load(open(sys.argv[1]))' $< || { echo "$<: not valid JSON" >&2; exit 1; }
	sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $< >$@.tmp && mv $@.tmp $@

src/gateway/routes_ops.o: $(GWREG_GEN)/openapi_json.inc
src/gateway/routes_ops.o: CPPFLAGS += -I$(GWREG_GEN)
