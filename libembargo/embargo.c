// The public C API of embargo.h, over the Go functions libembargo.go
// exports: cgo's generated declarations cannot carry const, so the stable,
// const-correct names live here and call them.
#include "embargo.h"
#include "_cgo_export.h"

void embargoCallEvent(embargo_event_fn fn, const embargo_event *ev, void *user) { fn(ev, user); }

embargo_receiver embargo_open(const embargo_config *cfg, embargo_event_fn fn, void *user, char *err, size_t err_len) {
	return embargoGoOpen((embargo_config *)cfg, fn, user, err, err_len);
}

int embargo_poll(embargo_receiver r, embargo_event *ev, int timeout_ms) { return embargoGoPoll(r, ev, timeout_ms); }

int embargo_read_stats(embargo_receiver r, embargo_stats *st) { return embargoGoStats(r, st); }

size_t embargo_error(embargo_receiver r, char *err, size_t err_len) { return embargoGoError(r, err, err_len); }

void embargo_close(embargo_receiver r) { embargoGoClose(r); }

int embargo_abi_version(void) { return EMBARGO_ABI_VERSION; }
