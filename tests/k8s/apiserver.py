#!/usr/bin/env python3
"""A test Kubernetes API server speaking the real wire protocol (HTTP/JSON): discovery, list with chunking
(limit/continue), field selectors, watch streams (chunked, newline-delimited events) with bookmarks, 410 Gone for
compacted resource versions, create/update/merge-patch/delete with resourceVersion conflicts, the status
subresource, bearer-token auth and per-resource RBAC denials. kubectl works against it.

Test controls (not part of the Kubernetes API), all POST:
  /__test/compact          forget history: watches from older versions get 410 Gone
  /__test/drop             drop every open watch connection (no final chunk)
  /__test/deny?resource=R  answer 403 Forbidden for resource R (plural); /__test/allow?resource=R undoes it
  /__test/hold?seconds=S   new watches wait S seconds before they are answered; with &resource=R (plural) only
                           watches of R. A later hold for the same scope replaces it (seconds=0 ends it at once).
  /__test/bookmarks?seconds=S  send a BOOKMARK every S seconds on watches that asked for them
  /__test/slowpods?seconds=S  every GET of one pod (/api/v1/namespaces/NS/pods/NAME; not lists, watches or the
                           status subresource) waits until /__test/release or S seconds pass, then is answered from
                           the store as it is then. S=0 turns it off for new GETs.
  /__test/release          answer every held pod GET now, and stop holding new ones (slowpods off)
and one GET:
  /__test/stats            JSON {"held_pod_gets": pod GETs waiting now, "pod_gets": pod GETs answered so far,
                           "watches": {plural: open watch streams}, "held_watches": {plural: watches waiting in a
                           hold}, "denied": ["verb group/resource[/subresource]" refused by --rbac, in order]}

Usage: apiserver.py --port-file FILE [--token TOKEN] [--tls-cert C --tls-key K --client-ca CA]
                    [--crds DIR] [--rbac FILE [--admin-token TOKEN]]

  --crds DIR   serve the custom resources (every group but the built-in ones) exactly as the CustomResourceDefinitions
               in DIR define them (group, version, plural, kind, scope, status subresource) instead of the built-in
               list. A resource with a status subresource behaves as in Kubernetes: a create or an update/patch of the
               object ignores its status, and only /status changes it; one without has no /status.
  --rbac FILE  authorize every request against the rules of the ClusterRole in FILE (YAML; lines with Helm template
               actions are dropped, so a chart's templates/rbac.yaml works as it is). A request no rule allows gets
               403 Forbidden and is recorded in /__test/stats "denied". Requests with the bearer token
               --admin-token (the test itself, as a cluster admin) are authenticated but not checked.
"""
import argparse
import base64
import json
import socket
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

# (group, version, plural) -> (kind, namespaced)
RESOURCES = {
    ("", "v1", "pods"): ("Pod", True),
    ("", "v1", "namespaces"): ("Namespace", False),
    ("", "v1", "nodes"): ("Node", False),
    ("", "v1", "services"): ("Service", True),
    ("discovery.k8s.io", "v1", "endpointslices"): ("EndpointSlice", True),
    ("networking.k8s.io", "v1", "networkpolicies"): ("NetworkPolicy", True),
    ("cilium.io", "v2", "ciliumnetworkpolicies"): ("CiliumNetworkPolicy", True),
    ("cilium.io", "v2", "ciliumclusterwidenetworkpolicies"): ("CiliumClusterwideNetworkPolicy", False),
    ("plexus.io", "v1alpha1", "plexusidentities"): ("PlexusIdentity", False),
    ("plexus.io", "v1alpha1", "plexusnodes"): ("PlexusNode", False),
    ("plexus.io", "v1alpha1", "plexusendpoints"): ("PlexusEndpoint", True),
}
SHORT = {"pods": ["po"], "namespaces": ["ns"], "nodes": ["no"], "services": ["svc"], "networkpolicies": ["netpol"],
         "ciliumnetworkpolicies": ["cnp"], "ciliumclusterwidenetworkpolicies": ["ccnp"]}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
BUILTIN_GROUPS = {"", "discovery.k8s.io", "networking.k8s.io"}
CRD_MODE = False       # --crds: custom resources as their CRDs define them
STATUS_SUB = set()     # --crds: resource keys with a status subresource
RBAC_RULES = None      # --rbac: the ClusterRole's rules


def load_crds(directory):
    """Replaces the built-in custom resources with the CRDs in directory."""
    import os
    import yaml
    global CRD_MODE
    CRD_MODE = True
    for key in [k for k in RESOURCES if k[0] not in BUILTIN_GROUPS]:
        del RESOURCES[key]
    for f in sorted(os.listdir(directory)):
        if not f.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(open(os.path.join(directory, f))):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            names = spec["names"]
            for v in spec["versions"]:
                if not v.get("served"):
                    continue
                key = (spec["group"], v["name"], names["plural"])
                RESOURCES[key] = (names["kind"], spec["scope"] == "Namespaced")
                if "status" in (v.get("subresources") or {}):
                    STATUS_SUB.add(key)
            if names.get("shortNames"):
                SHORT[names["plural"]] = names["shortNames"]


def load_rbac(path):
    """The rules of the ClusterRole in path; Helm template actions ({{ ... }}) are dropped line by line."""
    import yaml
    global RBAC_RULES
    text = "\n".join(line for line in open(path).read().splitlines() if "{{" not in line)
    for doc in yaml.safe_load_all(text):
        if doc and doc.get("kind") == "ClusterRole":
            RBAC_RULES = doc.get("rules") or []
            return
    raise SystemExit(f"--rbac {path}: no ClusterRole")


def rbac_allows(verb, group, resource):
    for rule in RBAC_RULES:
        if (group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", [])) and \
                (resource in rule.get("resources", []) or "*" in rule.get("resources", [])) and \
                (verb in rule.get("verbs", []) or "*" in rule.get("verbs", [])):
            return True
    return False


class Store:
    def __init__(self):
        self.lock = threading.Condition()
        self.rv = 1
        self.objects = {}  # (g, v, plural) -> {(ns, name): obj}
        self.log = []      # (rv, key, type, obj)
        self.compacted = 0
        self.deny = set()
        self.bookmark_seconds = 1.0
        self.drop_generation = 0
        self.hold_until = 0.0
        self.hold_resource_until = {}  # plural -> time: /__test/hold?resource=R
        self.slow_pod_seconds = 0.0    # /__test/slowpods: bound on each held pod GET
        self.release_generation = 0    # bumped by /__test/release
        self.held_pod_gets = 0
        self.pod_gets = 0
        self.watches = {}              # plural -> open watch streams
        self.held_watches = {}         # plural -> watches waiting in a hold
        self.denied = []               # --rbac refusals: "verb group/resource[/sub]"

    def bump(self):
        self.rv += 1
        return self.rv


STORE = Store()


def seed_namespaces():
    """The namespaces every real API server has from its start."""
    objs = STORE.objects.setdefault(("", "v1", "namespaces"), {})
    for name in ("default", "kube-system", "kube-public"):
        objs[("", name)] = {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "uid": str(uuid.uuid4()), "resourceVersion": str(STORE.bump()),
                         "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def status(code, reason, message, kind=None):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    if kind:
        body["details"] = {"kind": kind}
    return body


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = merge_patch(target.get(k), v)
    return target


def field_match(obj, selector):
    if not selector:
        return True
    for term in selector.split(","):
        if "!=" in term:
            path, value, neg = term.split("!=", 1) + [True]
        else:
            path, value = term.split("=", 1)
            neg = False
        cur = obj
        for part in path.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        ok = (str(cur) if cur is not None else "") == value
        if ok == neg:
            return False
    return True


def parse_path(path):
    """-> (key, namespace, name, subresource) or None."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    if parts[0] == "api" and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    ns = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        ns, rest = rest[1], rest[2:]
    if not rest:
        return None
    plural = rest[0]
    key = (group, version, plural)
    if key not in RESOURCES:
        return None
    name = rest[1] if len(rest) >= 2 else None
    sub = rest[2] if len(rest) >= 3 else None
    return key, ns, name, sub


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    token = None
    admin_token = None

    def log_message(self, fmt, *args):  # quiet
        pass

    def send_json(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return "invalid"

    def authorized(self):
        if not Handler.token:
            return True
        if self.headers.get("Authorization") == "Bearer " + Handler.token:
            return True
        if Handler.admin_token and self.headers.get("Authorization") == "Bearer " + Handler.admin_token:
            return True
        if isinstance(self.connection, ssl.SSLSocket) and self.connection.getpeercert():
            return True
        self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
        return False

    # ---- discovery ----
    def discovery(self, path):
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
        if path == "/apis":
            groups = sorted({(g, v) for (g, v, _) in RESOURCES if g})
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                 "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}} for g, v in groups]}
        if path == "/version":
            return {"major": "1", "minor": "32", "gitVersion": "v1.32.0-plexus-test", "platform": "linux/amd64"}
        parts = [p for p in path.split("/") if p]
        gv = None
        if len(parts) == 2 and parts[0] == "api":
            gv = ("", parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            gv = (parts[1], parts[2])
        if gv is None:
            return None
        res = []
        for (g, v, plural), (kind, namespaced) in RESOURCES.items():
            if (g, v) == gv:
                res.append({"name": plural, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
                            "verbs": VERBS, "shortNames": SHORT.get(plural, [])})
                if not CRD_MODE or g in BUILTIN_GROUPS or (g, v, plural) in STATUS_SUB:
                    res.append({"name": plural + "/status", "singularName": "", "namespaced": namespaced,
                                "kind": kind, "verbs": ["get", "patch", "update"]})
        if not res:
            return None
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": gv[1] if not gv[0] else f"{gv[0]}/{gv[1]}", "resources": res}

    def control(self, url):
        q = parse_qs(url.query)
        with STORE.lock:
            if url.path == "/__test/compact":
                STORE.compacted = STORE.rv
                STORE.log.clear()
            elif url.path == "/__test/drop":
                STORE.drop_generation += 1
            elif url.path == "/__test/deny":
                STORE.deny.add(q["resource"][0])
            elif url.path == "/__test/allow":
                STORE.deny.discard(q["resource"][0])
            elif url.path == "/__test/hold":
                until = time.time() + float(q["seconds"][0])
                if "resource" in q:
                    STORE.hold_resource_until[q["resource"][0]] = until
                else:
                    STORE.hold_until = until
            elif url.path == "/__test/slowpods":
                STORE.slow_pod_seconds = max(0.0, float(q["seconds"][0]))
            elif url.path == "/__test/release":
                STORE.release_generation += 1
                STORE.slow_pod_seconds = 0.0
            elif url.path == "/__test/bookmarks":
                STORE.bookmark_seconds = float(q["seconds"][0])
            STORE.lock.notify_all()
        self.send_json(200, {"ok": True})

    def forbidden(self, key, verb, ns, sub=None):
        resource = key[2] + (f"/{sub}" if sub else "")
        admin = Handler.admin_token and self.headers.get("Authorization") == "Bearer " + Handler.admin_token
        denied_by_role = RBAC_RULES is not None and not admin and not rbac_allows(verb, key[0], resource)
        if key[2] not in STORE.deny and not denied_by_role:
            return False
        if denied_by_role:
            with STORE.lock:
                STORE.denied.append(f"{verb} {key[0]}/{resource}")
        scope = f'in the namespace "{ns}"' if ns else "at the cluster scope"
        self.send_json(403, status(403, "Forbidden",
                                   f'{resource} is forbidden: User "system:serviceaccount:kube-system:plexus" cannot '
                                   f'{verb} resource "{resource}" in API group "{key[0]}" {scope}', key[2]))
        return True

    def no_status(self, key, sub):
        """--crds: a custom resource without a status subresource has no /status (404, as Kubernetes)."""
        if sub == "status" and CRD_MODE and key[0] not in BUILTIN_GROUPS and key not in STATUS_SUB:
            self.send_json(404, status(404, "NotFound", "the server could not find the requested resource"))
            return True
        return False

    def stats(self):
        with STORE.lock:
            body = {"held_pod_gets": STORE.held_pod_gets, "pod_gets": STORE.pod_gets,
                    "watches": {k: v for k, v in STORE.watches.items() if v},
                    "held_watches": {k: v for k, v in STORE.held_watches.items() if v},
                    "denied": list(STORE.denied)}
        self.send_json(200, body)

    def slow_pod_get(self):
        """A slow server: hold this GET until /__test/release or slow_pod_seconds pass (bounded). Caller holds
        STORE.lock."""
        if STORE.slow_pod_seconds <= 0:
            return
        generation = STORE.release_generation
        deadline = time.time() + STORE.slow_pod_seconds
        STORE.held_pod_gets += 1
        try:
            while STORE.release_generation == generation and time.time() < deadline:
                STORE.lock.wait(max(0.001, deadline - time.time()))
        finally:
            STORE.held_pod_gets -= 1

    # ---- verbs ----
    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/__test/stats":
            return self.stats()
        if not self.authorized():
            return
        d = self.discovery(url.path.rstrip("/"))
        if d is not None:
            return self.send_json(200, d)
        p = parse_path(url.path)
        if p is None:
            return self.send_json(404, status(404, "NotFound", "the server could not find the requested resource"))
        key, ns, name, sub = p
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if q.get("watch") in ("1", "true"):
            if self.forbidden(key, "watch", ns, sub):
                return
            return self.watch(key, ns, q)
        if self.forbidden(key, "get" if name else "list", ns, sub) or self.no_status(key, sub):
            return
        kind, namespaced = RESOURCES[key]
        with STORE.lock:
            if name and sub is None and key == ("", "v1", "pods"):
                self.slow_pod_get()
                STORE.pod_gets += 1
            objs = STORE.objects.get(key, {})
            if name:
                obj = objs.get((ns or "", name))
                if obj is None:
                    return self.send_json(404, status(404, "NotFound", f'{key[2]} "{name}" not found', key[2]))
                return self.send_json(200, obj)
            items = [o for (ons, _), o in sorted(objs.items())
                     if (ns is None or ons == ns) and field_match(o, q.get("fieldSelector"))]
            rv = STORE.rv
        start = 0
        if q.get("continue"):
            tok = json.loads(base64.b64decode(q["continue"]).decode())
            start, rv = tok["start"], tok["rv"]
        limit = int(q.get("limit") or 0)
        page = items[start:start + limit] if limit else items[start:]
        meta = {"resourceVersion": str(rv)}
        if limit and start + limit < len(items):
            meta["continue"] = base64.b64encode(json.dumps({"start": start + limit, "rv": rv}).encode()).decode()
            meta["remainingItemCount"] = len(items) - start - limit
        # List items carry no apiVersion/kind, as the real server's.
        page = [{k: v for k, v in o.items() if k not in ("apiVersion", "kind")} for o in page]
        api_version = key[1] if not key[0] else f"{key[0]}/{key[1]}"
        self.send_json(200, {"kind": kind + "List", "apiVersion": api_version, "metadata": meta, "items": page})

    def watch(self, key, ns, q):
        since = int(q.get("resourceVersion") or 0)
        timeout = float(q.get("timeoutSeconds") or 1800)
        bookmarks = q.get("allowWatchBookmarks") in ("1", "true")
        selector = q.get("fieldSelector")
        plural = key[2]
        with STORE.lock:
            # A slow or partitioned server: history may be compacted meanwhile. Bounded by the hold's deadline,
            # which a later /__test/hold may move (seconds=0 ends it).
            STORE.held_watches[plural] = STORE.held_watches.get(plural, 0) + 1
            try:
                while True:
                    left = max(STORE.hold_until, STORE.hold_resource_until.get(plural, 0.0)) - time.time()
                    if left <= 0:
                        break
                    STORE.lock.wait(left)
            finally:
                STORE.held_watches[plural] -= 1
            STORE.watches[plural] = STORE.watches.get(plural, 0) + 1
        try:
            self.stream_watch(key, ns, since, timeout, bookmarks, selector)
        finally:
            with STORE.lock:
                STORE.watches[plural] -= 1

    def stream_watch(self, key, ns, since, timeout, bookmarks, selector):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(obj):
            data = (json.dumps(obj) + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        deadline = time.time() + timeout
        with STORE.lock:
            generation = STORE.drop_generation
            if since and since < STORE.compacted:
                chunk({"type": "ERROR", "object": status(410, "Expired",
                                                          f"too old resource version: {since} ({STORE.compacted})")})
                self.wfile.write(b"0\r\n\r\n")
                return
            cursor = since if since else STORE.rv
        next_bookmark = time.time() + STORE.bookmark_seconds
        try:
            while time.time() < deadline:
                with STORE.lock:
                    if STORE.drop_generation != generation:
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    events = [e for e in STORE.log if e[0] > cursor and e[1] == key]
                    if events:
                        cursor = max(e[0] for e in events)
                    else:
                        STORE.lock.wait(0.1)
                    current = STORE.rv
                for rv, _, typ, obj in events:
                    if (ns is None or obj["metadata"].get("namespace", "") == ns) and field_match(obj, selector):
                        chunk({"type": typ, "object": obj})
                if bookmarks and time.time() >= next_bookmark:
                    kind, _ = RESOURCES[key]
                    api_version = key[1] if not key[0] else f"{key[0]}/{key[1]}"
                    chunk({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version,
                                                          "metadata": {"resourceVersion": str(max(cursor, current))}}})
                    next_bookmark = time.time() + STORE.bookmark_seconds
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, OSError):
            return

    def write_object(self, method):
        url = urlparse(self.path)
        if url.path.startswith("/__test/"):
            return self.control(url)
        if not self.authorized():
            return
        p = parse_path(url.path)
        if p is None:
            return self.send_json(404, status(404, "NotFound", "the server could not find the requested resource"))
        key, ns, name, sub = p
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
        if method == "DELETE" and not name:
            verb = "deletecollection"
        if self.forbidden(key, verb, ns, sub) or self.no_status(key, sub):
            return
        # --crds, a resource with a status subresource: writes to the object leave its status alone.
        status_sub = key in STATUS_SUB
        kind, namespaced = RESOURCES[key]
        body = self.body()
        if body == "invalid":
            return self.send_json(400, status(400, "BadRequest", "request body is not JSON"))
        api_version = key[1] if not key[0] else f"{key[0]}/{key[1]}"
        with STORE.lock:
            objs = STORE.objects.setdefault(key, {})
            if method == "POST":
                md = body.setdefault("metadata", {})
                oname = md.get("name")
                if not oname:
                    return self.send_json(422, status(422, "Invalid", "metadata.name: Required value"))
                okey = (ns or "", oname)
                if okey in objs:
                    return self.send_json(409, status(409, "AlreadyExists", f'{key[2]} "{oname}" already exists',
                                                      key[2]))
                if namespaced:
                    md["namespace"] = ns or md.get("namespace") or "default"
                    okey = (md["namespace"], oname)
                md["uid"] = str(uuid.uuid4())
                md["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                md["resourceVersion"] = str(STORE.bump())
                body["apiVersion"], body["kind"] = api_version, kind
                if status_sub:
                    body.pop("status", None)
                objs[okey] = body
                STORE.log.append((STORE.rv, key, "ADDED", json.loads(json.dumps(body))))
                STORE.lock.notify_all()
                return self.send_json(201, body)
            okey = (ns or "", name)
            cur = objs.get(okey)
            if cur is None:
                return self.send_json(404, status(404, "NotFound", f'{key[2]} "{name}" not found', key[2]))
            if method == "DELETE":
                del objs[okey]
                cur = json.loads(json.dumps(cur))
                cur["metadata"]["resourceVersion"] = str(STORE.bump())
                STORE.log.append((STORE.rv, key, "DELETED", cur))
                STORE.lock.notify_all()
                return self.send_json(200, cur)
            if method == "PUT":
                want = body.get("metadata", {}).get("resourceVersion")
                if want and want != cur["metadata"]["resourceVersion"]:
                    return self.send_json(409, status(409, "Conflict", f'Operation cannot be fulfilled on {key[2]} '
                                                      f'"{name}": the object has been modified', key[2]))
                new = body
                if sub == "status":
                    new = json.loads(json.dumps(cur))
                    new["status"] = body.get("status")
                elif "status" in cur:
                    new["status"] = cur["status"]
                elif status_sub:
                    new.pop("status", None)
            else:  # PATCH: merge patch
                new = json.loads(json.dumps(cur))
                if sub == "status":
                    new["status"] = merge_patch(new.get("status", {}), (body or {}).get("status", {}))
                else:
                    new = merge_patch(new, body or {})
                    if status_sub:
                        new.pop("status", None)
                        if "status" in cur:
                            new["status"] = cur["status"]
            md = new.setdefault("metadata", {})
            for k in ("uid", "creationTimestamp", "namespace", "name"):
                if k in cur["metadata"]:
                    md[k] = cur["metadata"][k]
            md["resourceVersion"] = str(STORE.bump())
            new["apiVersion"], new["kind"] = api_version, kind
            objs[okey] = new
            STORE.log.append((STORE.rv, key, "MODIFIED", json.loads(json.dumps(new))))
            STORE.lock.notify_all()
            return self.send_json(200, new)

    def do_POST(self):
        self.write_object("POST")

    def do_PUT(self):
        self.write_object("PUT")

    def do_PATCH(self):
        self.write_object("PATCH")

    def do_DELETE(self):
        self.write_object("DELETE")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--token")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--client-ca")
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--crds")
    ap.add_argument("--rbac")
    ap.add_argument("--admin-token")
    args = ap.parse_args()
    seed_namespaces()
    if args.crds:
        load_crds(args.crds)
    if args.rbac:
        load_rbac(args.rbac)
    Handler.token = args.token
    Handler.admin_token = args.admin_token
    server = ThreadingHTTPServer((args.bind, 0), Handler)
    server.daemon_threads = True
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        if args.client_ca:
            ctx.load_verify_locations(args.client_ca)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.rename(args.port_file + ".tmp", args.port_file)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
