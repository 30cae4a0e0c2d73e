# mk/sanitize.mk: `make test SANITIZE=1` (docs/testing.md, "Sanitizers").
#
# The extension is built with AddressSanitizer and UndefinedBehaviorSanitizer.
# Debian's postgres is not, so test/lib.sh preloads the ASan runtime into the
# postmaster (the runtime must come first in the process, before libc's
# malloc is bound) and points the reports at the run directory, where
# test/run reads them.  Only the library's own objects are instrumented: the
# generated protobuf glue is built with the same flags (it runs on Kafka's
# bytes), the test tools in test/tools are not.
#
# This fragment is included after PGXS, whose CFLAGS are already final, hence
# "override".

SANITIZE ?= 0

ifeq ($(SANITIZE),1)
EVC_SANITIZE_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer
override CFLAGS += $(EVC_SANITIZE_FLAGS)
# gcc's object-size warnings see the instrumented code, and misread it
# (strchr one past a one-character literal is "a region of size 0").
override CFLAGS += -Wno-stringop-overread
SHLIB_LINK += $(EVC_SANITIZE_FLAGS)
endif

# Objects built in one mode must not be linked in the other: the mode is
# kept in a file that every object depends on, rewritten when it changes.
EVC_BUILD_MODE := $(if $(filter 1,$(SANITIZE)),asan+ubsan,plain)
ifneq ($(shell cat .build/build-mode 2>/dev/null),$(EVC_BUILD_MODE))
$(shell mkdir -p .build && echo '$(EVC_BUILD_MODE)' >.build/build-mode)
endif
$(OBJS): .build/build-mode
.build/build-mode:
	mkdir -p .build && echo '$(EVC_BUILD_MODE)' >$@

# The preload helper that lets the ASan runtime start in Debian's postgres
# (test/sanitize/asan_first.c says why).  Built with the test tools.
tools: $(TOOLS_BIN)/evc-asan-first.so
$(TOOLS_BIN)/evc-asan-first.so: test/sanitize/asan_first.c | $(TOOLS_BIN)
	$(CC) -shared -fPIC -O2 -Wall -Wextra -Werror -o $@ $< -ldl
