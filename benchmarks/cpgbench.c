/* A small CPG client for benchmarks/lab_throughput.py, built at benchmark time:
 *     gcc -O2 -o cpgbench cpgbench.c -lcpg
 *
 *   cpgbench send COUNT SIZE MEMBERS  wait for MEMBERS in the group, multicast COUNT agreed
 *                                     messages of SIZE bytes (on TRY_AGAIN: dispatch, retry),
 *                                     then wait for all of them to come back
 *   cpgbench recv COUNT MEMBERS       count COUNT benchmark deliveries
 *   cpgbench echo COUNT SIZE          COUNT times: send one message, wait for its delivery
 *
 * Every message starts with the sender's CLOCK_MONOTONIC time; lab nodes share one kernel,
 * so delivery time minus that stamp is the one-way latency. Prints one JSON line.
 */
#include <corosync/cpg.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x70657266u /* "perf" */
#define IDLE_LIMIT_NS (30LL * 1000000000LL)

struct stamp {
	uint64_t send_ns;
	uint32_t index;
	uint32_t magic;
	uint32_t pid;
};

static cpg_handle_t handle;
static uint32_t my_pid;
static long want_members;
static long members_now;
static long expected;
static long delivered;
static long long delivered_bytes;
static long own_delivered;
static uint64_t first_ns, last_ns, echo_seen_ns;
static int64_t *latencies;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void on_deliver(cpg_handle_t h, const struct cpg_name *group, uint32_t nodeid,
		       uint32_t pid, void *msg, size_t len)
{
	struct stamp st;
	uint64_t t = now_ns();
	(void)h;
	(void)group;
	(void)nodeid;
	if (len < sizeof(st))
		return;
	memcpy(&st, msg, sizeof(st));
	if (st.magic != MAGIC)
		return;
	if (delivered == 0)
		first_ns = t;
	last_ns = t;
	if (delivered < expected)
		latencies[delivered] = (int64_t)(t - st.send_ns);
	delivered++;
	delivered_bytes += (long long)len;
	if (pid == my_pid && st.pid == my_pid) {
		own_delivered++;
		echo_seen_ns = t;
	}
}

static void on_confchg(cpg_handle_t h, const struct cpg_name *group,
		       const struct cpg_address *members, size_t n_members,
		       const struct cpg_address *left, size_t n_left,
		       const struct cpg_address *joined, size_t n_joined)
{
	(void)h;
	(void)group;
	(void)members;
	(void)left;
	(void)n_left;
	(void)joined;
	(void)n_joined;
	members_now = (long)n_members;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static double pct_ms(int64_t *sorted, long n, double pct)
{
	long rank;
	if (n <= 0)
		return 0.0;
	rank = (long)(pct / 100.0 * (double)n + 0.5) - 1;
	if (rank < 0)
		rank = 0;
	if (rank >= n)
		rank = n - 1;
	return (double)sorted[rank] / 1e6;
}

/* Dispatch what is there; with wait_ms > 0, first wait that long for something. */
static void pump(int fd, int wait_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (wait_ms > 0 && poll(&p, 1, wait_ms) <= 0)
		return;
	cpg_dispatch(handle, CS_DISPATCH_ALL);
}

static void report(const char *mode, long sent, long try_again)
{
	long n = delivered < expected ? delivered : expected;
	double seconds = (double)(last_ns - first_ns) / 1e9;
	qsort(latencies, (size_t)n, sizeof(int64_t), cmp_i64);
	printf("{\"mode\": \"%s\", \"sent\": %ld, \"count\": %ld, \"bytes\": %lld, "
	       "\"seconds\": %.6f, \"try_again\": %ld, \"latency_ms\": {\"p50\": %.4f, "
	       "\"p90\": %.4f, \"p99\": %.4f, \"max\": %.4f}}\n",
	       mode, sent, delivered, delivered_bytes, seconds, try_again, pct_ms(latencies, n, 50),
	       pct_ms(latencies, n, 90), pct_ms(latencies, n, 99), pct_ms(latencies, n, 100));
}

int main(int argc, char **argv)
{
	cpg_model_v1_data_t model = {.model = CPG_MODEL_V1,
				     .cpg_deliver_fn = on_deliver,
				     .cpg_confchg_fn = on_confchg,
				     .flags = 0};
	struct cpg_name group;
	const char *mode;
	long count, size = 0, sent = 0, try_again = 0;
	int fd;
	uint64_t idle_since;
	char *buffer = NULL;
	struct iovec iov;
	cs_error_t err;

	if (argc < 4) {
		fprintf(stderr, "usage: cpgbench send COUNT SIZE MEMBERS | recv COUNT MEMBERS | "
				"echo COUNT SIZE\n");
		return 64;
	}
	mode = argv[1];
	count = atol(argv[2]);
	if (strcmp(mode, "recv") == 0) {
		want_members = atol(argv[3]);
	} else {
		size = atol(argv[3]);
		want_members = argc > 4 ? atol(argv[4]) : 1;
	}
	if (count <= 0 || (strcmp(mode, "recv") != 0 && size < (long)sizeof(struct stamp))) {
		fprintf(stderr, "cpgbench: bad COUNT or SIZE\n");
		return 64;
	}
	expected = count;
	latencies = calloc((size_t)count, sizeof(int64_t));
	my_pid = (uint32_t)getpid();
	strcpy(group.value, "tperf");
	group.length = (uint32_t)strlen(group.value);
	if (cpg_model_initialize(&handle, CPG_MODEL_V1, (cpg_model_data_t *)&model, NULL) != CS_OK ||
	    cpg_join(handle, &group) != CS_OK || cpg_fd_get(handle, &fd) != CS_OK) {
		fprintf(stderr, "cpgbench: cannot join the CPG group (is corosync running?)\n");
		return 69;
	}
	idle_since = now_ns();
	while (members_now < want_members) {
		pump(fd, 100);
		if (now_ns() - idle_since > (uint64_t)IDLE_LIMIT_NS) {
			fprintf(stderr, "cpgbench: only %ld of %ld members joined\n", members_now,
				want_members);
			return 75;
		}
	}
	printf("{\"ready\": true}\n");
	fflush(stdout);
	if (strcmp(mode, "recv") != 0) {
		buffer = calloc(1, (size_t)size);
		iov.iov_base = buffer;
		iov.iov_len = (size_t)size;
	}
	if (strcmp(mode, "send") == 0) {
		while (sent < count) {
			struct stamp st = {now_ns(), (uint32_t)sent, MAGIC, my_pid};
			memcpy(buffer, &st, sizeof(st));
			err = cpg_mcast_joined(handle, CPG_TYPE_AGREED, &iov, 1);
			if (err == CS_ERR_TRY_AGAIN) {
				try_again++;
				pump(fd, 1);
				continue;
			}
			if (err != CS_OK) {
				fprintf(stderr, "cpgbench: cpg_mcast_joined: error %d\n", err);
				return 70;
			}
			sent++;
			if ((sent & 63) == 0)
				pump(fd, 0);
		}
	} else if (strcmp(mode, "echo") == 0) {
		while (sent < count) {
			uint64_t start = now_ns();
			struct stamp st = {start, (uint32_t)sent, MAGIC, my_pid};
			long before = own_delivered;
			memcpy(buffer, &st, sizeof(st));
			err = cpg_mcast_joined(handle, CPG_TYPE_AGREED, &iov, 1);
			if (err == CS_ERR_TRY_AGAIN) {
				pump(fd, 1);
				continue;
			}
			sent++;
			while (own_delivered == before)
				pump(fd, 1000);
		}
	}
	idle_since = now_ns();
	while (delivered < count) {
		long before = delivered;
		pump(fd, 200);
		if (delivered != before)
			idle_since = now_ns();
		else if (now_ns() - idle_since > (uint64_t)IDLE_LIMIT_NS)
			break;
	}
	report(mode, sent, try_again);
	cpg_finalize(handle);
	return delivered >= count ? 0 : 75;
}
