/*
 * libembargo — receive content keys (or any small resource) released by
 * embargo edges at one agreed instant, from C, C++, Swift (through a
 * bridging header), Kotlin/Java (through the NDK and JNI), and set-top box
 * firmware.
 *
 * Build: go build -buildmode=c-archive -o libembargo.a ./libembargo
 *    or: go build -buildmode=c-shared  -o libembargo.so ./libembargo
 * and include this header (not the generated libembargo.h). Link the
 * archive with -lpthread (and -framework CoreFoundation -framework
 * Security on Apple platforms).
 *
 * Threads: every function may be called from any thread. A callback runs
 * on a thread of the library, one event at a time per receiver; it must
 * return quickly and must not call embargo_close on its own receiver.
 *
 * Memory: the library owns every pointer it hands out. An event passed to
 * a callback is valid only during the call; an event filled by
 * embargo_poll is valid until the next embargo_poll or embargo_close on
 * that receiver. Copy what you keep. Strings the caller passes are read
 * during the call only.
 *
 * Times are TAI nanoseconds since 1970-01-01T00:00:00 TAI (PROTOCOL.md
 * §2); subtract the TAI − UTC offset (37 s since 2017) for UTC.
 */
#ifndef EMBARGO_H
#define EMBARGO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI this header describes; embargo_abi_version() returns the
 * library's. They must be equal. */
#define EMBARGO_ABI_VERSION 1

/* A receiver handle; 0 is never a valid one. */
typedef uint64_t embargo_receiver;

/* One content key of a period. */
typedef struct {
	uint8_t kid[16];
	uint8_t key[16];
} embargo_key;

/* One released period. */
typedef struct {
	uint32_t stream;
	uint64_t period;
	int64_t release_at;        /* TAI ns, signed by the origin */
	int64_t present_at;        /* TAI ns: when players should show it */
	int64_t arrival;           /* TAI ns: the RELEASE's arrival */
	int32_t arrival_by_kernel; /* 1: the kernel stamped it; 0: the library did, on read */
	int32_t catch_up;          /* 1: a catch-up copy for a late joiner */
	uint32_t edge_id;          /* the edge that released it */
	char from[64];             /* that edge's address, "ip:port", NUL-terminated */
	size_t n_keys;             /* content keys, or 0 for a resource */
	const embargo_key *keys;
	size_t resource_len;       /* an opaque resource, or 0 for keys */
	const uint8_t *resource;
} embargo_event;

/* What to receive, and with which keys: either session_url (and token),
 * or origin_key_file (and master_key_file). Unused fields are NULL/0. */
typedef struct {
	const char *session_url;     /* https://origin/v1/session; replicas' URLs comma-separated */
	const char *token;           /* bearer token for the master-key licence */
	const char *ca_file;         /* PEM CA the origin must chain to; NULL: the system's */
	const char *origin_key_file; /* origin.pub, without a session */
	const char *master_key_file; /* master.key (mode 0600), without a session */
	const char *groups;          /* comma-separated [source@]group:port[%interface]; NULL: the session's */
	const char *edges;           /* comma-separated ip:port to subscribe to by unicast */
	const uint32_t *streams;     /* streams to receive: required without a session; n_streams 0: the session's */
	size_t n_streams;
	int32_t catch_up;            /* released periods a unicast subscription asks for */
	const char *licence_proxy;   /* serve W3C ClearKey licences to a player here, e.g. "127.0.0.1:8080" */
} embargo_config;

/* Counters of a receiver. */
typedef struct {
	uint64_t delivered;      /* periods delivered */
	uint64_t dropped;        /* datagrams and periods dropped, all reasons */
	uint64_t failed_verification; /* of which failed verification: wrong origin key, forged or corrupt */
	uint64_t queue_overflow; /* events lost because embargo_poll was not called */
} embargo_stats;

typedef void (*embargo_event_fn)(const embargo_event *ev, void *user);

/* embargo_open starts a receiver. With fn, each released period is passed
 * to fn (with user); with fn NULL, events queue (up to 1024) for
 * embargo_poll. On failure it returns 0 and writes a NUL-terminated
 * message naming the problem into err (err_len bytes, may be 0). */
embargo_receiver embargo_open(const embargo_config *cfg, embargo_event_fn fn, void *user,
                              char *err, size_t err_len);

/* embargo_poll waits up to timeout_ms (negative: forever) for an event.
 * It returns 1 and fills *ev, 0 on timeout, -1 if the receiver is closed,
 * failed, or was opened with a callback. */
int embargo_poll(embargo_receiver r, embargo_event *ev, int timeout_ms);

/* embargo_read_stats fills *st; it returns 0, or -1 for an unknown receiver. */
int embargo_read_stats(embargo_receiver r, embargo_stats *st);

/* embargo_error writes why the receiver stopped (empty while it runs) and
 * returns the message's length. */
size_t embargo_error(embargo_receiver r, char *err, size_t err_len);

/* embargo_close stops the receiver, waits for its threads and frees it. */
void embargo_close(embargo_receiver r);

/* embargo_abi_version is the library's EMBARGO_ABI_VERSION. */
int embargo_abi_version(void);

#ifdef __cplusplus
}
#endif

#endif /* EMBARGO_H */
