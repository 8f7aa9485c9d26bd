/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Cursor-style packet parser shared by every Patronus program (after
 * xdp-tools' parsing_helpers.h). One call, parse_packet(), fills a
 * struct packet_info with the fields the classifiers match on and says
 * whether the frame is IP, non-IP or malformed. Every bound is explicit so
 * the verifier sees a finite program: at most two VLAN tags and
 * IPV6_EXT_MAX extension headers.
 *
 * Malformed (the caller drops it on ingress and counts it) is every frame
 * the parser cannot see through or whose headers contradict the frame:
 *   - truncated Ethernet/VLAN/IP/transport headers;
 *   - more VLAN tags than VLAN_MAX_DEPTH (a third tag would otherwise hide
 *     the IP header and pass as non-IP, unfiltered);
 *   - IPv4: version, IHL < 5, total length < IHL or beyond the frame;
 *   - IPv6: version, payload length beyond the frame, more than
 *     IPV6_EXT_MAX extension headers;
 *   - TCP data offset < 5 or beyond the segment; UDP length < 8 or beyond
 *     the segment (not checked in a first fragment, whose datagram goes on
 *     in later fragments); ICMP/ICMPv6 shorter than its 8-byte header.
 * "The frame" is frame_len bytes: at XDP data_end - data, at tc skb->len
 * (the linear area may be shorter than the packet there).
 */
#ifndef PATRONUS_PARSING_H
#define PATRONUS_PARSING_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef ETH_P_IP
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#endif

#define VLAN_MAX_DEPTH 2
#define IPV6_EXT_MAX 6 /* extension headers followed; a 7th is malformed (docs/fastpath.md) */
#define ICMP_HDR_LEN 8 /* ICMP and ICMPv6: type, code, checksum, 4 bytes of rest-of-header */

#ifndef TC_ACT_OK
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#endif

#define IPPROTO_HOPOPTS_ 0
#define IPPROTO_ROUTING_ 43
#define IPPROTO_FRAGMENT_ 44
#define IPPROTO_ICMPV6_ 58
#define IPPROTO_NONE_ 59
#define IPPROTO_DSTOPTS_ 60
#define IPPROTO_MH_ 135

enum parse_result {
	PARSE_IP = 0,      /* IPv4 or IPv6; packet_info filled */
	PARSE_NON_IP = 1,  /* well-formed Ethernet carrying something else */
	PARSE_MALFORMED = 2, /* truncated or inconsistent headers */
};

struct hdr_cursor {
	void *pos;
};

struct packet_info {
	__u8 family;        /* 4 or 6 */
	__u8 l4proto;       /* IPPROTO_* of the transport header */
	__u8 tcp_flags;     /* FIN..CWR bits, 0 for non-TCP */
	__u8 fragment;      /* 0 none, 1 first fragment, 2 later fragment */
	__u16 sport;        /* host byte order; 0 where there are no ports */
	__u16 dport;        /* for ICMP: type << 8 | code */
	__u16 vlan_id;      /* outer VLAN id, 0 when untagged */
	__u16 l3_off;       /* offset of the IP header in the frame */
	__u8 saddr[16];     /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
};

struct vlan_hdr_ {
	__be16 h_vlan_TCI;
	__be16 h_vlan_encapsulated_proto;
};

static __always_inline int proto_is_vlan(__u16 h_proto)
{
	return h_proto == bpf_htons(ETH_P_8021Q) || h_proto == bpf_htons(ETH_P_8021AD);
}

/* Returns the inner EtherType (network order) or -1 when truncated. */
static __always_inline int parse_ethhdr(struct hdr_cursor *nh, void *data_end,
					struct packet_info *pi)
{
	struct ethhdr *eth = nh->pos;
	struct vlan_hdr_ *vlh;
	__u16 h_proto;
	int i;

	if ((void *)(eth + 1) > data_end)
		return -1;
	nh->pos = eth + 1;
	h_proto = eth->h_proto;

#pragma unroll
	for (i = 0; i < VLAN_MAX_DEPTH; i++) {
		if (!proto_is_vlan(h_proto))
			break;
		vlh = nh->pos;
		if ((void *)(vlh + 1) > data_end)
			return -1;
		if (i == 0)
			pi->vlan_id = bpf_ntohs(vlh->h_vlan_TCI) & 0x0fff;
		h_proto = vlh->h_vlan_encapsulated_proto;
		nh->pos = vlh + 1;
	}
	/* Still a tag after VLAN_MAX_DEPTH: the parser cannot see the payload,
	 * so the frame must not pass as non-IP. */
	if (proto_is_vlan(h_proto))
		return -1;
	return h_proto;
}

/* Returns the IPv4 total length, or -1 when malformed. */
static __always_inline int parse_ipv4(struct hdr_cursor *nh, void *data_end,
				      struct packet_info *pi)
{
	struct iphdr *iph = nh->pos;
	int hdrsize, tot_len;
	__u16 frag;

	if ((void *)(iph + 1) > data_end)
		return -1;
	if (iph->version != 4)
		return -1;
	hdrsize = iph->ihl * 4;
	if (hdrsize < (int)sizeof(*iph))
		return -1;
	if (nh->pos + hdrsize > data_end)
		return -1;
	tot_len = bpf_ntohs(iph->tot_len);
	if (tot_len < hdrsize)
		return -1;

	pi->family = 4;
	pi->l4proto = iph->protocol;
	__builtin_memcpy(pi->saddr, &iph->saddr, 4);
	__builtin_memcpy(pi->daddr, &iph->daddr, 4);
	frag = bpf_ntohs(iph->frag_off);
	if (frag & 0x1fff)
		pi->fragment = 2;
	else if (frag & 0x2000)
		pi->fragment = 1;
	nh->pos += hdrsize;
	return tot_len;
}

static __always_inline int ipv6_is_ext(__u8 next)
{
	return next == IPPROTO_HOPOPTS_ || next == IPPROTO_DSTOPTS_ || next == IPPROTO_ROUTING_ ||
	       next == IPPROTO_MH_ || next == IPPROTO_FRAGMENT_;
}

/* Returns the IPv6 payload length (0: not given, e.g. a jumbogram), or -1
 * when malformed. Up to IPV6_EXT_MAX extension headers are followed; a
 * chain longer than that is malformed, so it cannot hide the transport
 * header. */
static __always_inline int parse_ipv6(struct hdr_cursor *nh, void *data_end,
				      struct packet_info *pi)
{
	struct ipv6hdr *ip6h = nh->pos;
	__u8 next;
	int i;

	if ((void *)(ip6h + 1) > data_end)
		return -1;
	if (ip6h->version != 6)
		return -1;
	pi->family = 6;
	__builtin_memcpy(pi->saddr, &ip6h->saddr, 16);
	__builtin_memcpy(pi->daddr, &ip6h->daddr, 16);
	next = ip6h->nexthdr;
	nh->pos = ip6h + 1;

#pragma unroll
	for (i = 0; i < IPV6_EXT_MAX; i++) {
		struct ipv6_opt_hdr *hdr = nh->pos;

		switch (next) {
		case IPPROTO_HOPOPTS_:
		case IPPROTO_DSTOPTS_:
		case IPPROTO_ROUTING_:
		case IPPROTO_MH_:
			if ((void *)(hdr + 1) > data_end)
				return -1;
			next = hdr->nexthdr;
			nh->pos = (void *)hdr + (hdr->hdrlen + 1) * 8;
			break;
		case IPPROTO_FRAGMENT_: {
			struct frag_hdr *fh = nh->pos;

			if ((void *)(fh + 1) > data_end)
				return -1;
			next = fh->nexthdr;
			if (bpf_ntohs(fh->frag_off) & 0xfff8)
				pi->fragment = 2;
			else
				pi->fragment = 1;
			nh->pos = fh + 1;
			break;
		}
		default:
			pi->l4proto = next;
			return bpf_ntohs(ip6h->payload_len);
		}
	}
	/* IPV6_EXT_MAX headers followed: what comes next must be the transport. */
	if (ipv6_is_ext(next))
		return -1;
	pi->l4proto = next;
	return bpf_ntohs(ip6h->payload_len);
}

/* seg_len: bytes from the transport header to the end of the IP datagram
 * (or of the frame, where the datagram's length is not given). */
static __always_inline int parse_l4(struct hdr_cursor *nh, void *data_end,
				    struct packet_info *pi, __s64 seg_len)
{
	if (pi->fragment == 2)
		return 0; /* later fragments carry no transport header */

	switch (pi->l4proto) {
	case IPPROTO_TCP: {
		struct tcphdr *th = nh->pos;

		if ((void *)(th + 1) > data_end)
			return -1;
		if (th->doff < 5 || th->doff * 4 > seg_len)
			return -1;
		pi->sport = bpf_ntohs(th->source);
		pi->dport = bpf_ntohs(th->dest);
		pi->tcp_flags = ((__u8 *)th)[13];
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = nh->pos;
		__u16 ulen;

		if ((void *)(uh + 1) > data_end)
			return -1;
		ulen = bpf_ntohs(uh->len);
		if (ulen < sizeof(*uh))
			return -1;
		if (pi->fragment == 0 && ulen > seg_len)
			return -1;
		pi->sport = bpf_ntohs(uh->source);
		pi->dport = bpf_ntohs(uh->dest);
		break;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6_: {
		__u8 *icmp = nh->pos;

		if ((void *)(icmp + 2) > data_end)
			return -1;
		if (seg_len < ICMP_HDR_LEN)
			return -1;
		pi->dport = ((__u16)icmp[0] << 8) | icmp[1];
		break;
	}
	default:
		break;
	}
	return 0;
}

/* Parse a frame of frame_len bytes, of which data..data_end is readable,
 * into *pi. */
static __always_inline enum parse_result parse_packet(void *data, void *data_end, __u64 frame_len,
						      struct packet_info *pi)
{
	struct hdr_cursor nh = { .pos = data };
	__s64 l3_end, l4_off;
	int h_proto, len;

	h_proto = parse_ethhdr(&nh, data_end, pi);
	if (h_proto < 0)
		return PARSE_MALFORMED;
	pi->l3_off = nh.pos - data;
	if (h_proto == bpf_htons(ETH_P_IP)) {
		len = parse_ipv4(&nh, data_end, pi);
		if (len < 0)
			return PARSE_MALFORMED;
		l3_end = (__s64)pi->l3_off + len;
	} else if (h_proto == bpf_htons(ETH_P_IPV6)) {
		len = parse_ipv6(&nh, data_end, pi);
		if (len < 0)
			return PARSE_MALFORMED;
		l3_end = len ? (__s64)pi->l3_off + sizeof(struct ipv6hdr) + len : (__s64)frame_len;
	} else {
		return PARSE_NON_IP;
	}
	if (l3_end > (__s64)frame_len)
		return PARSE_MALFORMED;
	l4_off = nh.pos - data;
	/* IPv6 extension headers that claim to reach past the datagram */
	if (l4_off > l3_end)
		return PARSE_MALFORMED;
	if (parse_l4(&nh, data_end, pi, l3_end - l4_off) < 0)
		return PARSE_MALFORMED;
	return PARSE_IP;
}

#endif /* PATRONUS_PARSING_H */
