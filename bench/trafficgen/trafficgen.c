// SPDX-License-Identifier: GPL-2.0
/*
 * patronus-trafficgen: sends prepared Ethernet frames out of a veth with no
 * kernel module, the way xdp-trafficgen does: bpf_prog_test_run in
 * live-frames mode on an XDP program that returns XDP_TX, with
 * ctx_in.ingress_ifindex = the sending device. Run it inside the sending
 * namespace (nsenter --net=..., so bpffs and /sys stay as they are).
 *
 *   patronus-trafficgen --dev eth0 --frames FILE --len 64 [--duration S | --count N]
 *                       [--cpus 0,1] [--batch 64] [--static] [--bpf-stats]
 *
 * FILE holds frames of exactly --len bytes back to back. Prints one JSON
 * line: packets handed to the device (sent), seconds, packets/s. "sent" is
 * what the generator offered, never what arrived: count at the receiver.
 *
 * --bpf-stats turns on the kernel's BPF run-time statistics (run_time_ns,
 * run_cnt of every program) for exactly the run, through BPF_ENABLE_STATS:
 * the kernel turns them off again when this process's descriptor closes, even
 * if it dies, so kernel.bpf_stats_enabled is never written and nothing is
 * left on for other users of the machine.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "trafficgen.skel.h"

#ifndef BPF_F_TEST_XDP_LIVE_FRAMES
#define BPF_F_TEST_XDP_LIVE_FRAMES (1U << 1)
#endif

#define FRAME_MAX 128
#define MAX_THREADS 64

struct runner {
	pthread_t thread;
	int cpu;
	int prog_fd;
	int ifindex;
	const void *pkt;
	uint32_t len;
	uint32_t batch;
	uint64_t quota; /* 0: until stopped */
	uint64_t sent;
	int err;
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *run(void *arg)
{
	struct runner *r = arg;
	struct xdp_md ctx_in = {
		.data_end = r->len,
		.ingress_ifindex = r->ifindex,
	};
	cpu_set_t set;

	if (r->cpu >= 0) {
		CPU_ZERO(&set);
		CPU_SET(r->cpu, &set);
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	/*
	 * Frames per syscall adapts to keep each call near 10 ms: a slow
	 * receiver (it runs in softirq right after each batch) must not make
	 * one call outlast the requested duration.
	 */
	uint32_t chunk = r->batch;

	while (!stopping && (!r->quota || r->sent < r->quota)) {
		uint64_t left = r->quota ? r->quota - r->sent : 0;
		uint32_t repeat = chunk;
		double t0, dt;
		LIBBPF_OPTS(bpf_test_run_opts, opts,
			    .data_in = r->pkt,
			    .data_size_in = r->len,
			    .ctx_in = &ctx_in,
			    .ctx_size_in = sizeof(ctx_in),
			    .repeat = 0,
			    .flags = BPF_F_TEST_XDP_LIVE_FRAMES,
			    .batch_size = r->batch);

		if (left && left < repeat)
			repeat = left;
		opts.repeat = repeat;
		t0 = now();
		if (bpf_prog_test_run_opts(r->prog_fd, &opts)) {
			if (errno == EINTR)
				continue;
			r->err = errno;
			break;
		}
		dt = now() - t0;
		r->sent += repeat;
		if (dt < 0.005 && chunk < (1U << 16))
			chunk *= 2;
		else if (dt > 0.02 && chunk > r->batch)
			chunk /= 2;
	}
	return NULL;
}

static int parse_cpus(const char *s, int *cpus, int max)
{
	int n = 0;
	char *copy = strdup(s), *tok, *save = NULL;

	for (tok = strtok_r(copy, ",", &save); tok && n < max; tok = strtok_r(NULL, ",", &save))
		cpus[n++] = atoi(tok);
	free(copy);
	return n;
}

static void usage(void)
{
	fprintf(stderr, "usage: patronus-trafficgen --dev DEV --frames FILE --len N "
			"[--duration S | --count N] [--cpus 0,1] [--batch 64] [--static] [--bpf-stats]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option long_opts[] = {
		{ "dev", required_argument, NULL, 'd' },
		{ "frames", required_argument, NULL, 'f' },
		{ "len", required_argument, NULL, 'l' },
		{ "duration", required_argument, NULL, 't' },
		{ "count", required_argument, NULL, 'n' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "batch", required_argument, NULL, 'b' },
		{ "static", no_argument, NULL, 's' },
		{ "bpf-stats", no_argument, NULL, 'S' },
		{ 0 },
	};
	const char *dev = NULL, *frames_path = NULL;
	uint32_t len = 0, batch = 64, nframes;
	double duration = 0;
	uint64_t count = 0, total = 0;
	bool static_frame = false, lo_attached = false, bpf_stats = false;
	int stats_fd = -1;
	unsigned int lo_ifindex;
	int cpus[MAX_THREADS] = { -1 }, nthreads = 1, ifindex, prog_fd, opt, i, err = 0;
	struct runner runners[MAX_THREADS] = {};
	struct trafficgen_bpf *skel;
	unsigned char *buf;
	long size;
	FILE *f;
	double t0, t1;

	while ((opt = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'd': dev = optarg; break;
		case 'f': frames_path = optarg; break;
		case 'l': len = strtoul(optarg, NULL, 0); break;
		case 't': duration = strtod(optarg, NULL); break;
		case 'n': count = strtoull(optarg, NULL, 0); break;
		case 'c': nthreads = parse_cpus(optarg, cpus, MAX_THREADS); break;
		case 'b': batch = strtoul(optarg, NULL, 0); break;
		case 's': static_frame = true; break;
		case 'S': bpf_stats = true; break;
		default: usage();
		}
	}
	if (!dev || !frames_path || len < 14 || len > FRAME_MAX || (!duration && !count) || nthreads < 1)
		usage();
	ifindex = if_nametoindex(dev);
	if (!ifindex) {
		fprintf(stderr, "trafficgen: no device %s in this network namespace: %s\n", dev, strerror(errno));
		return 1;
	}
	f = fopen(frames_path, "rb");
	if (!f) {
		fprintf(stderr, "trafficgen: open %s: %s\n", frames_path, strerror(errno));
		return 1;
	}
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	rewind(f);
	if (size <= 0 || size % len) {
		fprintf(stderr, "trafficgen: %s holds %ld bytes, not a multiple of --len %u\n", frames_path, size, len);
		return 1;
	}
	nframes = size / len;
	buf = calloc(nframes, FRAME_MAX);
	for (i = 0; i < (int)nframes; i++) {
		if (fread(buf + (size_t)i * FRAME_MAX, 1, len, f) != len) {
			fprintf(stderr, "trafficgen: short read on %s\n", frames_path);
			return 1;
		}
	}
	fclose(f);

	skel = trafficgen_bpf__open();
	if (!skel) {
		fprintf(stderr, "trafficgen: open BPF object: %s\n", strerror(errno));
		return 1;
	}
	skel->rodata->nframes = nframes;
	skel->rodata->frame_len = len;
	bpf_map__set_max_entries(skel->maps.frames, nframes);
	err = trafficgen_bpf__load(skel);
	if (err) {
		fprintf(stderr, "trafficgen: load BPF object: %s\n", strerror(-err));
		return 1;
	}
	for (i = 0; i < (int)nframes; i++) {
		uint32_t key = i;

		if (bpf_map_update_elem(bpf_map__fd(skel->maps.frames), &key, buf + (size_t)i * FRAME_MAX, 0)) {
			fprintf(stderr, "trafficgen: write frame %d: %s\n", i, strerror(errno));
			return 1;
		}
	}
	prog_fd = bpf_program__fd(static_frame ? skel->progs.xdp_tx_static : skel->progs.xdp_gen);

	/*
	 * Every bpf_prog_test_run with repeat > 1 adds the program to the XDP
	 * dispatcher and removes it again; each change rewrites the dispatcher
	 * and waits for an RCU grace period (tens of ms on a busy VM, which
	 * would dwarf the frames sent per call). A program the dispatcher
	 * already holds only has its use count bumped, so keep ours attached
	 * (generic mode) to this namespace's loopback while we run. Nothing
	 * travels on the sender namespace's loopback.
	 */
	lo_ifindex = if_nametoindex("lo");
	if (lo_ifindex && bpf_xdp_attach(lo_ifindex, prog_fd, XDP_FLAGS_SKB_MODE | XDP_FLAGS_UPDATE_IF_NOEXIST, NULL) == 0)
		lo_attached = true;
	else
		fprintf(stderr, "trafficgen: warning: could not hold the program on lo (%s); every call pays an XDP dispatcher update\n",
			strerror(errno));

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (bpf_stats) {
		stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
		if (stats_fd < 0) {
			fprintf(stderr, "trafficgen: BPF_ENABLE_STATS (run time): %s\n", strerror(errno));
			if (lo_attached)
				bpf_xdp_detach(lo_ifindex, XDP_FLAGS_SKB_MODE, NULL);
			trafficgen_bpf__destroy(skel);
			return 1;
		}
	}
	for (i = 0; i < nthreads; i++) {
		runners[i] = (struct runner){
			.cpu = cpus[i], .prog_fd = prog_fd, .ifindex = ifindex, .pkt = buf,
			.len = len, .batch = batch, .quota = count ? (count + nthreads - 1) / nthreads : 0,
		};
	}
	t0 = now();
	for (i = 0; i < nthreads; i++) {
		err = pthread_create(&runners[i].thread, NULL, run, &runners[i]);
		if (err) {
			fprintf(stderr, "trafficgen: pthread_create: %s\n", strerror(err));
			stopping = 1;
			nthreads = i;
			break;
		}
	}
	if (duration) {
		while (!stopping && now() - t0 < duration)
			usleep(2000);
		stopping = 1;
	}
	for (i = 0; i < nthreads; i++)
		pthread_join(runners[i].thread, NULL);
	t1 = now();
	if (stats_fd >= 0)
		close(stats_fd);
	for (i = 0; i < nthreads; i++) {
		total += runners[i].sent;
		if (runners[i].err) {
			fprintf(stderr, "trafficgen: bpf_prog_test_run (live frames) on %s, thread %d: %s\n",
				dev, i, strerror(runners[i].err));
			err = runners[i].err;
		}
	}
	printf("{\"sent\":%llu,\"seconds\":%.6f,\"pps\":%.0f,\"frames\":%u,\"len\":%u,\"threads\":%d}\n",
	       (unsigned long long)total, t1 - t0, total / (t1 - t0), nframes, len, nthreads);
	if (lo_attached)
		bpf_xdp_detach(lo_ifindex, XDP_FLAGS_SKB_MODE, NULL);
	trafficgen_bpf__destroy(skel);
	free(buf);
	return err ? 1 : 0;
}
