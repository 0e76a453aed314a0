/*
 * receive: print each key period an embargo edge releases, through
 * libembargo's C API.
 *
 *   receive -pub origin.pub -master master.key [-stream S] [-group G] [-edge E] [-n N]
 *   receive -session URL -token TOKEN [-ca ca.pem] [-n N]
 *
 * Prints one line per period: stream, period, release and arrival (TAI ns),
 * whether the kernel stamped the arrival, and each key as kid=key in hex.
 * Exits 0 after N periods (default 3), 1 on an error.
 *
 * Build (see README.md, "For device teams"):
 *   go build -buildmode=c-archive -o libembargo.a ./libembargo
 *   cc -I libembargo examples/c/receive.c libembargo.a -lpthread -o receive
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embargo.h"

static void hex(const uint8_t *b, size_t n) {
	for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
}

int main(int argc, char **argv) {
	embargo_config cfg;
	memset(&cfg, 0, sizeof cfg);
	long want = 3;
	uint32_t stream = 1;
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *f = argv[i], *v = argv[i + 1];
		if (!strcmp(f, "-pub")) cfg.origin_key_file = v;
		else if (!strcmp(f, "-master")) cfg.master_key_file = v;
		else if (!strcmp(f, "-group")) cfg.groups = v;
		else if (!strcmp(f, "-edge")) cfg.edges = v;
		else if (!strcmp(f, "-session")) cfg.session_url = v;
		else if (!strcmp(f, "-token")) cfg.token = v;
		else if (!strcmp(f, "-ca")) cfg.ca_file = v;
		else if (!strcmp(f, "-stream")) stream = (uint32_t)strtoul(v, NULL, 10);
		else if (!strcmp(f, "-n")) want = strtol(v, NULL, 10);
		else {
			fprintf(stderr, "receive: unknown flag %s\n", f);
			return 2;
		}
	}
	if (!cfg.session_url) {
		/* Without a session, the streams are the caller's to name. */
		cfg.streams = &stream;
		cfg.n_streams = 1;
	}
	if (embargo_abi_version() != EMBARGO_ABI_VERSION) {
		fprintf(stderr, "receive: libembargo ABI %d, header %d\n", embargo_abi_version(), EMBARGO_ABI_VERSION);
		return 1;
	}
	char err[256];
	embargo_receiver r = embargo_open(&cfg, NULL, NULL, err, sizeof err);
	if (!r) {
		fprintf(stderr, "receive: %s\n", err);
		return 1;
	}
	long got = 0;
	while (got < want) {
		embargo_event ev;
		int n = embargo_poll(r, &ev, 30000);
		if (n < 0) {
			embargo_error(r, err, sizeof err);
			fprintf(stderr, "receive: stopped: %s\n", err);
			embargo_close(r);
			return 1;
		}
		if (n == 0) {
			fprintf(stderr, "receive: no period in 30 s\n");
			embargo_close(r);
			return 1;
		}
		printf("stream=%u period=%llu release_at=%lld arrival=%lld kernel=%d from=%s keys=",
		       ev.stream, (unsigned long long)ev.period, (long long)ev.release_at,
		       (long long)ev.arrival, ev.arrival_by_kernel, ev.from);
		for (size_t i = 0; i < ev.n_keys; i++) {
			if (i) printf(",");
			hex(ev.keys[i].kid, 16);
			printf("=");
			hex(ev.keys[i].key, 16);
		}
		printf("\n");
		fflush(stdout);
		got++;
	}
	embargo_stats st;
	if (embargo_read_stats(r, &st) == 0)
		fprintf(stderr, "receive: %llu periods delivered, %llu dropped (%llu failed verification)\n",
		        (unsigned long long)st.delivered, (unsigned long long)st.dropped,
		        (unsigned long long)st.failed_verification);
	embargo_close(r);
	return 0;
}
