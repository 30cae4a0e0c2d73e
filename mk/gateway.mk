# The HTTP gateway (src/gateway): libwebsockets for HTTP/1.1 and TLS.
SHLIB_LINK += -lwebsockets

.PHONY: bench-gateway
# wrk against the gateway and against nginx, in the same run (bench/gateway).
bench-gateway:
	bench/gateway
