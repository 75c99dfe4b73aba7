/* Security identities shared by the datapath and the agent (Cilium's numbering). The one definition: BPF C uses
 * the macros, C++ the plexus::identity names built from them (identity/include/plexus/identity/identity.h). */
#pragma once

/* Reserved identities. */
#define PLEXUS_IDENTITY_UNKNOWN 0
#define PLEXUS_IDENTITY_HOST 1
#define PLEXUS_IDENTITY_WORLD 2
#define PLEXUS_IDENTITY_UNMANAGED 3
#define PLEXUS_IDENTITY_HEALTH 4
#define PLEXUS_IDENTITY_INIT 5        /* an endpoint whose labels are not known yet */
#define PLEXUS_IDENTITY_REMOTE_NODE 6 /* another node's host */
#define PLEXUS_IDENTITY_KUBE_APISERVER 7
#define PLEXUS_IDENTITY_INGRESS 8
#define PLEXUS_IDENTITY_RESERVED_MAX 8

/* Cluster-wide identities (allocated through the API server, equal on every node). */
#define PLEXUS_IDENTITY_CLUSTER_MIN 256
#define PLEXUS_IDENTITY_CLUSTER_MAX 65535
/* Node-local identities (policy CIDRs) have bit 24 set. */
#define PLEXUS_IDENTITY_LOCAL_FLAG (1u << 24)
/* Reserved and cluster identities fit the 24-bit VNI of a tunnel header; local ones never leave the node. */
#define PLEXUS_IDENTITY_VNI_MAX ((1u << 24) - 1)
