// Chart tests for helm/plexus: render with `helm template` and check the objects.
// Needs HELM (path to a helm binary; helm/tests/run.sh provides it) and python3 with the yaml module, which turns
// helm's multi-document YAML into JSON (no npm dependencies).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const chart = path.join(repo, 'helm', 'plexus');
const helmBin = process.env.HELM || 'helm';
const kTimeoutMs = 60000;

const kCaps = ['NET_ADMIN', 'SYS_ADMIN', 'BPF', 'PERFMON', 'SYS_RESOURCE', 'NET_RAW'];
const kKprMessage =
  'kubeProxyReplacement=true needs k8sServiceHost: without kube-proxy the kubernetes Service ClusterIP is not ' +
  'reachable before the agent runs';

function run(cmd, args, input) {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', timeout: kTimeoutMs, cwd: repo });
  if (r.error) {
    throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  }
  return r;
}

// Multi-document YAML -> array of non-empty documents.
function parseYamlDocs(text) {
  const py = 'import sys, yaml, json\n' +
    'json.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)';
  const r = run('python3', ['-c', py], text);
  assert.equal(r.status, 0, `python3 yaml parse failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

function parseYaml(text) {
  const docs = parseYamlDocs(text);
  assert.equal(docs.length, 1, 'expected one YAML document');
  return docs[0];
}

// helm template t helm/plexus --namespace kube-system <args>
function template(args = []) {
  return run(helmBin, ['template', 't', chart, '--namespace', 'kube-system', ...args]);
}

function render(args = []) {
  const r = template(args);
  assert.equal(r.status, 0, `helm template ${args.join(' ')} failed: ${r.stderr}`);
  return parseYamlDocs(r.stdout);
}

function find(docs, kind, name) {
  const matches = docs.filter((d) => d.kind === kind && (name === undefined || d.metadata.name === name));
  assert.equal(matches.length, 1, `expected exactly one ${kind} ${name ?? ''}, got ${matches.length}`);
  return matches[0];
}

function agentConfig(args = []) {
  const cm = find(render(args), 'ConfigMap', 'plexus-config');
  return parseYaml(cm.data['config.yaml']);
}

function daemonSet(args = []) {
  return find(render(args), 'DaemonSet', 'plexus');
}

function agentContainer(ds) {
  const c = ds.spec.template.spec.containers.find((x) => x.name === 'agent');
  assert.ok(c, 'agent container missing');
  return c;
}

function volumeByHostPath(ds, hostPath) {
  const v = ds.spec.template.spec.volumes.find((x) => x.hostPath && x.hostPath.path === hostPath);
  assert.ok(v, `no hostPath volume for ${hostPath}`);
  return v;
}

function mountOf(container, volumeName) {
  const m = container.volumeMounts.find((x) => x.name === volumeName);
  assert.ok(m, `container ${container.name} does not mount ${volumeName}`);
  return m;
}

// A values file in a temporary directory (for quoted strings and structures --set cannot express).
function valuesFile(text) {
  const dir = fs.mkdtempSync(path.join(process.env.TMPDIR || '/tmp', 'plexus-chart-test-'));
  const file = path.join(dir, 'values.yaml');
  fs.writeFileSync(file, text);
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return ['-f', file];
}

function expectFailure(args, pattern) {
  const r = template(args);
  assert.notEqual(r.status, 0, `helm template ${args.join(' ')} should fail`);
  assert.match(r.stderr, pattern);
}

describe('default render', () => {
  test('renders every kind in the release namespace', () => {
    const docs = render();
    for (const kind of ['DaemonSet', 'ConfigMap', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Service']) {
      assert.ok(docs.some((d) => d.kind === kind), `missing ${kind}`);
    }
    for (const d of docs.filter((x) => !x.kind.startsWith('Cluster'))) {
      assert.equal(d.metadata.namespace, 'kube-system', `${d.kind} ${d.metadata.name} namespace`);
    }
    assert.ok(!docs.some((d) => d.kind === 'CustomResourceDefinition'), 'CRDs only with --include-crds');
  });

  test('namespace follows the release, not a hard-coded kube-system', () => {
    const r = run(helmBin, ['template', 't', chart, '--namespace', 'plexus-system']);
    assert.equal(r.status, 0, r.stderr);
    const docs = parseYamlDocs(r.stdout);
    assert.equal(find(docs, 'DaemonSet', 'plexus').metadata.namespace, 'plexus-system');
    assert.equal(find(docs, 'ClusterRoleBinding', 'plexus').subjects[0].namespace, 'plexus-system');
  });

  test('labels come from the helpers', () => {
    const ds = daemonSet();
    const labels = ds.spec.template.metadata.labels;
    assert.equal(labels['app.kubernetes.io/name'], 'plexus');
    assert.equal(labels['app.kubernetes.io/instance'], 't');
    assert.equal(labels['app.kubernetes.io/part-of'], 'plexus');
    const svc = find(render(), 'Service', 'plexus-metrics');
    assert.deepEqual(svc.spec.selector, ds.spec.selector.matchLabels);
  });

  test('conflist chains plexus-cni and portmap', () => {
    const cm = find(render(), 'ConfigMap', 'plexus-config');
    assert.deepEqual(JSON.parse(cm.data['05-plexus.conflist']), {
      cniVersion: '1.0.0',
      name: 'plexus',
      plugins: [
        { type: 'plexus-cni', socket: '/run/plexus/plexus.sock' },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    });
  });
});

describe('CRDs', () => {
  const kExpected = {
    'ciliumnetworkpolicies.cilium.io': { scope: 'Namespaced', kind: 'CiliumNetworkPolicy', version: 'v2', short: 'cnp' },
    'ciliumclusterwidenetworkpolicies.cilium.io': {
      scope: 'Cluster', kind: 'CiliumClusterwideNetworkPolicy', version: 'v2', short: 'ccnp',
    },
    'plexusidentities.plexus.io': { scope: 'Cluster', kind: 'PlexusIdentity', version: 'v1alpha1' },
    'plexusnodes.plexus.io': { scope: 'Cluster', kind: 'PlexusNode', version: 'v1alpha1' },
    'plexusendpoints.plexus.io': { scope: 'Namespaced', kind: 'PlexusEndpoint', version: 'v1alpha1', short: 'pep' },
  };

  // Structural schema (apiextensions v1): every node states a type, or preserves unknown fields.
  function assertStructural(schema, where) {
    assert.ok(schema.type || schema['x-kubernetes-preserve-unknown-fields'], `${where}: no type`);
    for (const [k, v] of Object.entries(schema.properties ?? {})) {
      assertStructural(v, `${where}.${k}`);
    }
    if (schema.items) {
      assertStructural(schema.items, `${where}[]`);
    }
    if (typeof schema.additionalProperties === 'object') {
      assertStructural(schema.additionalProperties, `${where}{}`);
    }
  }

  const crds = () => render(['--include-crds']).filter((d) => d.kind === 'CustomResourceDefinition');

  test('five CRDs with the expected names, scopes and versions', () => {
    const all = crds();
    assert.deepEqual(all.map((c) => c.metadata.name).sort(), Object.keys(kExpected).sort());
    for (const crd of all) {
      const want = kExpected[crd.metadata.name];
      assert.equal(crd.apiVersion, 'apiextensions.k8s.io/v1');
      assert.equal(crd.spec.scope, want.scope, crd.metadata.name);
      assert.equal(crd.spec.names.kind, want.kind);
      if (want.short) {
        assert.deepEqual(crd.spec.names.shortNames, [want.short]);
      }
      assert.equal(crd.spec.versions.length, 1);
      const v = crd.spec.versions[0];
      assert.equal(v.name, want.version);
      assert.equal(v.served, true);
      assert.equal(v.storage, true);
      assertStructural(v.schema.openAPIV3Schema, crd.metadata.name);
    }
  });

  test('Cilium policy schema: spec, specs and status', () => {
    for (const crd of crds().filter((c) => c.spec.group === 'cilium.io')) {
      const v = crd.spec.versions[0];
      assert.deepEqual(v.subresources, { status: {} });
      const props = v.schema.openAPIV3Schema.properties;
      const spec = props.spec;
      assert.equal(spec.type, 'object');
      for (const rules of ['ingress', 'ingressDeny', 'egress', 'egressDeny']) {
        assert.equal(spec.properties[rules].type, 'array', rules);
        assert.equal(spec.properties[rules].items.type, 'object', rules);
        assert.equal(spec.properties[rules].items['x-kubernetes-preserve-unknown-fields'], true, rules);
      }
      assert.equal(spec.properties.endpointSelector.type, 'object');
      assert.equal(spec.properties.nodeSelector.type, 'object');
      assert.deepEqual(spec.properties.enableDefaultDeny.properties, {
        ingress: { type: 'boolean' },
        egress: { type: 'boolean' },
      });
      assert.equal(spec.properties.description.type, 'string');
      assert.equal(spec.properties.labels.type, 'array');
      assert.equal(props.specs.type, 'array');
      assert.deepEqual(props.specs.items, spec);
      assert.equal(props.status.type, 'object');
      assert.equal(props.status['x-kubernetes-preserve-unknown-fields'], true);
    }
  });

  test('Plexus CRDs: identity labels and node IPAM', () => {
    const all = crds();
    const id = all.find((c) => c.metadata.name === 'plexusidentities.plexus.io').spec.versions[0];
    const idSchema = id.schema.openAPIV3Schema;
    assert.deepEqual(idSchema.required, ['security-labels']);
    assert.equal(idSchema.properties['security-labels'].type, 'object');
    assert.deepEqual(idSchema.properties['security-labels'].additionalProperties, { type: 'string' });

    const node = all.find((c) => c.metadata.name === 'plexusnodes.plexus.io').spec.versions[0];
    assert.deepEqual(node.subresources, { status: {} });
    const nodeProps = node.schema.openAPIV3Schema.properties;
    assert.equal(nodeProps.spec.properties.ipam.properties.podCIDRs.type, 'array');
    assert.equal(nodeProps.spec.properties.ipam.properties.podCIDRs.items.type, 'string');
    assert.equal(nodeProps.status.properties.ipam.properties.allocated.type, 'integer');
  });

  test('PlexusEndpoint: namespaced, status written with the object, the fields the agent reads', () => {
    const crd = crds().find((c) => c.metadata.name === 'plexusendpoints.plexus.io');
    assert.ok(crd, 'no CRD plexusendpoints.plexus.io');
    assert.equal(crd.spec.group, 'plexus.io');
    assert.equal(crd.spec.names.plural, 'plexusendpoints');
    assert.equal(crd.spec.names.listKind, 'PlexusEndpointList');
    const v = crd.spec.versions[0];
    // The agent creates the object with its status in one request and merge-patches the object: a status
    // subresource would make the API server drop the status of the create.
    assert.ok(!v.subresources || !v.subresources.status, 'PlexusEndpoint must not have a status subresource');
    const status = v.schema.openAPIV3Schema.properties.status;
    assert.equal(status.type, 'object');
    assert.deepEqual(status.properties.ipv4, { type: 'string', description: status.properties.ipv4.description });
    assert.equal(status.properties.identity.type, 'integer');
    assert.equal(status.properties.identity.minimum, 1);
    assert.equal(status.properties.identity.maximum, 16777215);
    assert.equal(status.properties.nodeName.type, 'string');
    assert.equal(status.properties.labels.type, 'array');
    assert.equal(status.properties.labels.items.type, 'string');
    assert.deepEqual([...status.required].sort(), ['identity', 'ipv4', 'nodeName']);
    // The schema's status fields are exactly those the agent's parser reads (node/src/endpoint.cc): a field the
    // agent reads but the schema lacks would be pruned by the API server.
    const src = fs.readFileSync(path.join(repo, 'node', 'src', 'endpoint.cc'), 'utf8');
    const parser = src.slice(src.indexOf('parsePlexusEndpoint'), src.indexOf('plexusEndpointObject'));
    const read = new Set([...parser.matchAll(/st(?:\.contains\(|\[)"(\w+)"/g)].map((m) => m[1]));
    assert.deepEqual([...read].sort(), Object.keys(status.properties).sort());
  });
});

describe('DaemonSet', () => {
  test('pod settings', () => {
    const ds = daemonSet();
    const pod = ds.spec.template.spec;
    assert.equal(pod.hostNetwork, true);
    assert.equal(pod.dnsPolicy, 'ClusterFirstWithHostNet');
    assert.equal(pod.priorityClassName, 'system-node-critical');
    assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
    assert.deepEqual(pod.nodeSelector, { 'kubernetes.io/os': 'linux' });
    assert.equal(pod.serviceAccountName, 'plexus');
    assert.deepEqual(ds.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
  });

  test('agent command, env and image', () => {
    const agent = agentContainer(daemonSet());
    assert.deepEqual(agent.command, ['plexus-agent', '--config', '/etc/plexus/config.yaml']);
    assert.ok(!('args' in agent), 'no args without extraArgs');
    assert.equal(agent.image, 'localhost/plexus:0.1.0');
    assert.equal(agent.imagePullPolicy, 'IfNotPresent');
    const nodeName = agent.env.find((e) => e.name === 'PLEXUS_NODE_NAME');
    assert.equal(nodeName.valueFrom.fieldRef.fieldPath, 'spec.nodeName');
    assert.ok(!agent.env.some((e) => e.name.startsWith('KUBERNETES_SERVICE_')), 'no API override without KPR');
  });

  test('agent capabilities: exactly the six, drop ALL, not privileged, spc_t', () => {
    const sc = agentContainer(daemonSet()).securityContext;
    assert.equal(sc.privileged, false);
    assert.deepEqual(sc.capabilities.add, kCaps);
    assert.deepEqual(sc.capabilities.drop, ['ALL']);
    assert.deepEqual(sc.seLinuxOptions, { level: 's0', type: 'spc_t' });
  });

  test('hostPath volumes and mount propagation', () => {
    const ds = daemonSet();
    const agent = agentContainer(ds);
    const init = ds.spec.template.spec.initContainers.find((c) => c.name === 'install');

    const bpf = volumeByHostPath(ds, '/sys/fs/bpf');
    assert.equal(mountOf(agent, bpf.name).mountPath, '/sys/fs/bpf');
    assert.equal(mountOf(agent, bpf.name).mountPropagation, 'HostToContainer');
    assert.equal(mountOf(init, bpf.name).mountPropagation, 'Bidirectional');

    const cg = volumeByHostPath(ds, '/run/plexus/cgroupv2');
    assert.equal(mountOf(agent, cg.name).mountPath, '/run/plexus/cgroupv2');
    assert.equal(mountOf(init, cg.name).mountPropagation, 'Bidirectional');

    const run = volumeByHostPath(ds, '/run/plexus');
    assert.equal(mountOf(agent, run.name).mountPath, '/run/plexus');

    const state = volumeByHostPath(ds, '/var/lib/plexus');
    assert.equal(state.hostPath.type, 'DirectoryOrCreate');
    assert.equal(mountOf(agent, state.name).mountPath, '/var/lib/plexus');

    const bin = volumeByHostPath(ds, '/opt/cni/bin');
    assert.equal(mountOf(init, bin.name).mountPath, '/host/opt/cni/bin');
    const conf = volumeByHostPath(ds, '/etc/cni/net.d');
    assert.equal(mountOf(init, conf.name).mountPath, '/host/etc/cni/net.d');
    assert.ok(agent.volumeMounts.some((m) => m.name === conf.name), 'agent mounts the CNI conf dir');

    const modules = volumeByHostPath(ds, '/lib/modules');
    assert.equal(mountOf(agent, modules.name).readOnly, true);

    const netns = volumeByHostPath(ds, '/run/netns');
    assert.equal(mountOf(agent, netns.name).mountPropagation, 'HostToContainer');

    const cm = ds.spec.template.spec.volumes.find((v) => v.configMap && v.configMap.name === 'plexus-config');
    assert.ok(cm, 'ConfigMap volume missing');
    assert.equal(mountOf(agent, cm.name).mountPath, '/etc/plexus');
  });

  test('custom host paths follow the values', () => {
    const ds = daemonSet([
      '--set', 'bpf.root=/mnt/bpf', '--set', 'cgroup.hostRoot=/mnt/cg2',
      '--set', 'cni.binPath=/usr/libexec/cni', '--set', 'cni.confPath=/var/cni/conf',
    ]);
    const agent = agentContainer(ds);
    assert.equal(mountOf(agent, volumeByHostPath(ds, '/mnt/bpf').name).mountPath, '/mnt/bpf');
    assert.equal(mountOf(agent, volumeByHostPath(ds, '/mnt/cg2').name).mountPath, '/mnt/cg2');
    volumeByHostPath(ds, '/usr/libexec/cni');
    volumeByHostPath(ds, '/var/cni/conf');
    const cfg = agentConfig(['--set', 'bpf.root=/mnt/bpf', '--set', 'cgroup.hostRoot=/mnt/cg2']);
    assert.equal(cfg['bpf-root'], '/mnt/bpf/plexus');
    assert.equal(cfg['cgroup-root'], '/mnt/cg2');
  });

  test('init container installs the plugin and conflist, privileged', () => {
    const ds = daemonSet();
    const init = ds.spec.template.spec.initContainers.find((c) => c.name === 'install');
    assert.ok(init, 'init container install missing');
    assert.equal(init.securityContext.privileged, true);
    assert.equal(init.image, agentContainer(ds).image);
    const script = init.command.join('\n');
    assert.match(script, /mount -t bpf bpf "\/sys\/fs\/bpf"/);
    assert.match(script, /mount -t cgroup2 none "\/run\/plexus\/cgroupv2"/);
    assert.match(script, /\/usr\/local\/bin\/plexus-cni/);
    assert.match(script, /\/host\/opt\/cni\/bin\/plexus-cni/);
    assert.match(script, /\/host\/etc\/cni\/net\.d\/05-plexus\.conflist/);
  });

  test('probes hit /healthz on the prometheus port', () => {
    const agent = agentContainer(daemonSet(['--set', 'prometheus.port=9100']));
    for (const probe of [agent.readinessProbe, agent.livenessProbe]) {
      assert.ok(probe, 'probe missing');
      assert.equal(probe.httpGet.path, '/healthz');
      assert.equal(probe.httpGet.port, 9100);
      assert.ok(probe.periodSeconds >= 1);
    }
  });

  test('resources come from values', () => {
    assert.deepEqual(agentContainer(daemonSet()).resources, { requests: { cpu: '100m', memory: '128Mi' } });
    const custom = agentContainer(daemonSet(['--set', 'resources.limits.memory=1Gi'])).resources;
    assert.equal(custom.limits.memory, '1Gi');
  });
});

describe('ConfigMap config.yaml', () => {
  test('defaults', () => {
    const cfg = agentConfig();
    assert.equal(cfg['state-dir'], '/var/lib/plexus');
    assert.equal(cfg.socket, '/run/plexus/plexus.sock');
    assert.equal(cfg['bpf-root'], '/sys/fs/bpf/plexus');
    assert.equal(cfg['cgroup-root'], '/run/plexus/cgroupv2');
    assert.equal(cfg['cluster-name'], 'default');
    assert.equal(cfg['routing-mode'], 'tunnel');
    assert.equal(cfg['tunnel-protocol'], 'vxlan');
    assert.equal(cfg['tunnel-port'], 8472);
    assert.equal(cfg['auto-direct-node-routes'], false);
    assert.ok(!('ipv4-native-routing-cidr' in cfg), 'empty ipv4NativeRoutingCIDR is omitted');
    assert.equal(cfg.mtu, 0);
    assert.equal(cfg['health-port'], 4240);
    assert.equal(cfg['enable-bpf-masquerade'], false);
    assert.equal(cfg['lb-algorithm'], 'maglev');
    assert.equal(cfg['prometheus-serve-addr'], '0.0.0.0:9962');
    assert.equal(cfg.debug, false);
    assert.equal(cfg['enable-hubble'], true);
  });

  test('every key is a scalar or a list (the agent rejects maps)', () => {
    const cfg = agentConfig(['--set', 'kubeProxyReplacement=true', '--set', 'k8sServiceHost=10.0.0.1',
      '--set', 'devices={eth0,eth1}']);
    for (const [k, v] of Object.entries(cfg)) {
      assert.ok(v === null || typeof v !== 'object' || Array.isArray(v), `${k} is a map`);
    }
    assert.deepEqual(cfg.devices, ['eth0', 'eth1']);
  });

  test('kube-proxy replacement on', () => {
    const args = ['--set', 'kubeProxyReplacement=true', '--set', 'k8sServiceHost=10.0.0.1', '--set',
      'k8sServicePort=7443'];
    const cfg = agentConfig(args);
    assert.equal(cfg['kube-proxy-replacement'], true);
    assert.equal(cfg['k8s-service-host'], '10.0.0.1');
    assert.equal(cfg['k8s-service-port'], 7443);
    assert.equal(cfg['enable-socket-lb'], true);
    const env = agentContainer(daemonSet(args)).env;
    assert.deepEqual(env.find((e) => e.name === 'KUBERNETES_SERVICE_HOST'),
      { name: 'KUBERNETES_SERVICE_HOST', value: '10.0.0.1' });
    assert.deepEqual(env.find((e) => e.name === 'KUBERNETES_SERVICE_PORT'),
      { name: 'KUBERNETES_SERVICE_PORT', value: '7443' });
  });

  test('kube-proxy replacement off', () => {
    const cfg = agentConfig();
    assert.equal(cfg['kube-proxy-replacement'], false);
    assert.equal(cfg['enable-socket-lb'], false);
    assert.ok(!('k8s-service-host' in cfg));
  });

  test('hubble on and off', () => {
    assert.equal(agentConfig(['--set', 'hubble.enabled=true'])['enable-hubble'], true);
    assert.equal(agentConfig(['--set', 'hubble.enabled=false'])['enable-hubble'], false);
  });

  test('hubble.socketPath and hubble.listenAddress reach the agent; the TCP port is the container\'s', () => {
    const cfg = agentConfig();
    assert.equal(cfg['hubble-socket-path'], '/run/plexus/hubble.sock');
    assert.equal(cfg['hubble-listen-address'], '');
    assert.ok(!agentContainer(daemonSet()).ports.some((p) => p.name === 'hubble-peer'));
    const args = ['--set', 'hubble.socketPath=/run/plexus/h.sock', '--set', 'hubble.listenAddress=:4244'];
    const set = agentConfig(args);
    assert.equal(set['hubble-socket-path'], '/run/plexus/h.sock');
    assert.equal(set['hubble-listen-address'], ':4244');
    const port = agentContainer(daemonSet(args)).ports.find((p) => p.name === 'hubble-peer');
    assert.equal(port.containerPort, 4244);
    assert.equal(port.hostPort, 4244);
    const peer = find(render(args), 'Service', 'hubble-peer');
    assert.equal(peer.spec.internalTrafficPolicy, 'Local');
    assert.equal(peer.spec.ports[0].targetPort, 'hubble-peer');
    assert.ok(!render().some((d) => d.kind === 'Service' && d.metadata.name === 'hubble-peer'));
    expectFailure(['--set', 'hubble.listenAddress=4244'], /listenAddress/);
    expectFailure(['--set', 'hubble.socketPath=relative.sock'], /socketPath/);
  });

  test('hubble.tls: TLS on the TCP listener by default, with helm-generated certificates mounted where the flags say', () => {
    const args = ['--set', 'hubble.listenAddress=:4244'];
    const cfg = agentConfig(args);
    assert.equal(cfg['hubble-disable-tls'], false);
    assert.equal(cfg['hubble-tls-cert-file'], '/var/lib/plexus/tls/hubble/server.crt');
    assert.equal(cfg['hubble-tls-key-file'], '/var/lib/plexus/tls/hubble/server.key');
    assert.deepEqual(cfg['hubble-tls-client-ca-files'], ['/var/lib/plexus/tls/hubble/client-ca.crt']);
    const docs = render(args);
    const server = find(docs, 'Secret', 'hubble-server-certs');
    const client = find(docs, 'Secret', 'hubble-relay-client-certs');
    assert.equal(server.type, 'kubernetes.io/tls');
    assert.equal(server.data['ca.crt'], client.data['ca.crt'], 'one CA signs both');
    // The server certificate names every node of the cluster as Hubble's peer service announces them.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plexus-chart-'));
    try {
      const pem = path.join(dir, 'server.crt');
      fs.writeFileSync(pem, Buffer.from(server.data['tls.crt'], 'base64'));
      const text = run('openssl', ['x509', '-in', pem, '-noout', '-ext', 'subjectAltName']).stdout;
      assert.match(text, /DNS:\*\.default\.hubble-grpc\.cilium\.io/);
      const ca = path.join(dir, 'ca.crt');
      fs.writeFileSync(ca, Buffer.from(server.data['ca.crt'], 'base64'));
      assert.match(run('openssl', ['verify', '-CAfile', ca, pem]).stdout, /OK/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    const ds = daemonSet(args);
    const volume = ds.spec.template.spec.volumes.find((v) => v.name === 'hubble-tls');
    assert.equal(volume.projected.sources[0].secret.name, 'hubble-server-certs');
    assert.deepEqual(volume.projected.sources[0].secret.items.map((i) => i.path), ['server.crt', 'server.key', 'client-ca.crt']);
    assert.equal(mountOf(agentContainer(ds), 'hubble-tls').mountPath, '/var/lib/plexus/tls/hubble');
    assert.equal(find(docs, 'Service', 'hubble-peer').spec.ports[0].port, 443);

    // An existing Secret instead (cert-manager's, say); plaintext with tls.enabled=false; nothing without a listener.
    const existing = ['--set', 'hubble.listenAddress=:4244,hubble.tls.auto.enabled=false,hubble.tls.server.existingSecret=mine'];
    assert.ok(!render(existing).some((d) => d.kind === 'Secret'));
    assert.equal(daemonSet(existing).spec.template.spec.volumes.find((v) => v.name === 'hubble-tls').projected.sources[0].secret.name, 'mine');
    const plain = ['--set', 'hubble.listenAddress=:4244,hubble.tls.enabled=false'];
    assert.equal(agentConfig(plain)['hubble-disable-tls'], true);
    assert.ok(!('hubble-tls-cert-file' in agentConfig(plain)));
    assert.ok(!render(plain).some((d) => d.kind === 'Secret'));
    assert.equal(find(render(plain), 'Service', 'hubble-peer').spec.ports[0].port, 80);
    assert.ok(!render().some((d) => d.kind === 'Secret'));
    assert.ok(!daemonSet().spec.template.spec.volumes.some((v) => v.name === 'hubble-tls'));
    expectFailure(['--set', 'hubble.listenAddress=:4244,hubble.tls.auto.enabled=false'], /existingSecret/);
    expectFailure(['--set', 'hubble.listenAddress=:4244,hubble.tls.auto.method=certmanager'], /certmanager/);
  });

  test('hubble.metrics.enabled and hubble.metrics.port render Cilium\'s agent keys, the port and the Service', () => {
    const off = agentConfig();
    assert.ok(!('hubble-metrics-server' in off) && !('hubble-metrics' in off), 'off by default (enabled: null)');
    assert.ok(!render().some((d) => d.kind === 'Service' && d.metadata.name === 'hubble-metrics'));
    assert.ok(!agentContainer(daemonSet()).ports.some((p) => p.name === 'hubble-metrics'));
    assert.ok(!('hubble-metrics' in agentConfig(['--set', 'hubble.metrics.enabled=null'])));
    assert.ok(!('hubble-metrics' in agentConfig(valuesFile('hubble: {metrics: {enabled: []}}\n'))));

    // As Cilium's docs write it: a --set list, one entry with options whose commas are escaped.
    const args = ['--set', 'hubble.metrics.enabled={dns,drop,tcp,flow,port-distribution,icmp,' +
      'httpV2:exemplars=true;labelsContext=source_ip\\,source_namespace}'];
    const cfg = agentConfig(args);
    assert.equal(cfg['hubble-metrics-server'], ':9965');
    assert.equal(cfg['hubble-metrics'],
      'dns drop tcp flow port-distribution icmp httpV2:exemplars=true;labelsContext=source_ip,source_namespace');
    const port = agentContainer(daemonSet(args)).ports.find((p) => p.name === 'hubble-metrics');
    assert.equal(port.containerPort, 9965);
    assert.equal(port.hostPort, 9965);
    const svc = find(render(args), 'Service', 'hubble-metrics');
    assert.equal(svc.spec.clusterIP, 'None');
    assert.equal(svc.spec.ports[0].port, 9965);
    assert.equal(svc.spec.ports[0].targetPort, 'hubble-metrics');
    assert.equal(svc.metadata.annotations['prometheus.io/scrape'], 'true');
    assert.equal(svc.metadata.annotations['prometheus.io/port'], '9965');

    const moved = agentConfig(valuesFile('hubble: {metrics: {enabled: [flow, drop], port: 9999}}\n'));
    assert.equal(moved['hubble-metrics-server'], ':9999');
    assert.equal(moved['hubble-metrics'], 'flow drop');
    // Off with hubble, as Cilium: no flows, no flow metrics.
    assert.ok(!('hubble-metrics' in agentConfig([...args, '--set', 'hubble.enabled=false'])));

    expectFailure([...args, '--set', 'hubble.metrics.port=9962'], /hubble\.metrics\.port=9962 is prometheus\.port too/);
    expectFailure(['--set', 'hubble.metrics.enableOpenMetrics=true'], /hubble\.metrics\.enableOpenMetrics=true is not supported/);
    expectFailure(['--set', 'hubble.metrics.port=0'], /port/);
    expectFailure(valuesFile('hubble: {metrics: {enabled: flow}}\n'), /enabled/);
    expectFailure(['--set', 'hubble.metrics.dashboards.enabled=true'], /dashboards/);
  });

  test('ipam cluster-pool renders the CIDR list and mask size', () => {
    const cfg = agentConfig(['--set', 'ipam.mode=cluster-pool',
      '--set', 'ipam.operator.clusterPoolIPv4PodCIDRList={10.1.0.0/16,10.2.0.0/16}',
      '--set', 'ipam.operator.clusterPoolIPv4MaskSize=26']);
    assert.equal(cfg['ipam-mode'], 'cluster-pool');
    assert.deepEqual(cfg['cluster-pool-ipv4-cidr'], ['10.1.0.0/16', '10.2.0.0/16']);
    assert.equal(cfg['cluster-pool-ipv4-mask-size'], 26);
    assert.deepEqual(agentConfig()['cluster-pool-ipv4-cidr'], ['10.0.0.0/8']);
  });

  test('ipam kubernetes', () => {
    const cfg = agentConfig(['--set', 'ipam.mode=kubernetes']);
    assert.equal(cfg['ipam-mode'], 'kubernetes');
    assert.ok(!('cluster-pool-ipv4-cidr' in cfg));
  });

  test('loadBalancer.algorithm random', () => {
    assert.equal(agentConfig(['--set', 'loadBalancer.algorithm=random'])['lb-algorithm'], 'random');
  });

  test('prometheus disabled: no serve addr, health addr, probes and Service follow', () => {
    const args = ['--set', 'prometheus.enabled=false'];
    const cfg = agentConfig(args);
    assert.equal(cfg['prometheus-serve-addr'], '');
    assert.equal(cfg['health-addr'], '127.0.0.1:9879');
    const agent = agentContainer(daemonSet(args));
    for (const probe of [agent.readinessProbe, agent.livenessProbe]) {
      assert.equal(probe.httpGet.path, '/healthz');
      assert.equal(probe.httpGet.port, 9879);
    }
    assert.ok(!render(args).some((d) => d.kind === 'Service'), 'no metrics Service without prometheus');
  });

  test('metrics Service is headless and annotated', () => {
    const svc = find(render(['--set', 'prometheus.port=9100']), 'Service', 'plexus-metrics');
    assert.equal(svc.spec.clusterIP, 'None');
    assert.equal(svc.spec.ports[0].port, 9100);
    assert.equal(svc.metadata.annotations['prometheus.io/scrape'], 'true');
    assert.equal(svc.metadata.annotations['prometheus.io/port'], '9100');
  });

  test('debug.enabled', () => {
    assert.equal(agentConfig(['--set', 'debug.enabled=true']).debug, true);
  });

  test('native routing: routingMode, autoDirectNodeRoutes, ipv4NativeRoutingCIDR', () => {
    const cfg = agentConfig(['--set', 'routingMode=native', '--set', 'autoDirectNodeRoutes=true',
      '--set', 'ipv4NativeRoutingCIDR=10.0.0.0/8']);
    assert.equal(cfg['routing-mode'], 'native');
    assert.equal(cfg['auto-direct-node-routes'], true);
    assert.equal(cfg['ipv4-native-routing-cidr'], '10.0.0.0/8');
    // Native mode without direct routes also renders (without masquerade, which would need the native CIDR).
    const plain = agentConfig(['--set', 'routingMode=native', '--set', 'enableIPv4Masquerade=false']);
    assert.equal(plain['routing-mode'], 'native');
    assert.equal(plain['auto-direct-node-routes'], false);
  });

  test('tunnelPort', () => {
    assert.equal(agentConfig(['--set', 'tunnelPort=8473'])['tunnel-port'], 8473);
  });

  test('MTU', () => {
    assert.equal(agentConfig(['--set', 'MTU=1450']).mtu, 1450);
  });

  test('bpf.hostLegacyRouting: BPF host routing by default, the kernel stack when set', () => {
    assert.equal(agentConfig()['enable-host-legacy-routing'], false);
    assert.equal(agentConfig(['--set', 'bpf.hostLegacyRouting=true'])['enable-host-legacy-routing'], true);
  });

  test('healthPort: a port, or 0 for off', () => {
    assert.equal(agentConfig(['--set', 'healthPort=4241'])['health-port'], 4241);
    assert.equal(agentConfig(['--set', 'healthPort=0'])['health-port'], 0);
  });

  test('conntrackGCInterval: a duration in seconds for the agent; "0s" keeps its default', () => {
    assert.ok(!('conntrack-gc-interval' in agentConfig()));
    assert.equal(agentConfig(['--set', 'conntrackGCInterval=90s'])['conntrack-gc-interval'], 90);
    assert.equal(agentConfig(['--set', 'conntrackGCInterval=5m'])['conntrack-gc-interval'], 300);
    assert.equal(agentConfig(['--set', 'conntrackGCInterval=1h'])['conntrack-gc-interval'], 3600);
  });
});

describe('RBAC', () => {
  const kRules = {
    '/pods': ['get', 'list', 'watch'],
    '/namespaces': ['get', 'list', 'watch'],
    '/services': ['get', 'list', 'watch'],
    '/nodes': ['get', 'list', 'watch'],
    '/nodes/status': ['patch'],
    'discovery.k8s.io/endpointslices': ['get', 'list', 'watch'],
    'networking.k8s.io/networkpolicies': ['get', 'list', 'watch'],
    'cilium.io/ciliumnetworkpolicies': ['get', 'list', 'watch'],
    'cilium.io/ciliumclusterwidenetworkpolicies': ['get', 'list', 'watch'],
    'cilium.io/ciliumnetworkpolicies/status': ['patch', 'update'],
    'cilium.io/ciliumclusterwidenetworkpolicies/status': ['patch', 'update'],
    'plexus.io/plexusidentities': ['create', 'delete', 'get', 'list', 'patch', 'watch'],
    'plexus.io/plexusnodes': ['create', 'get', 'list', 'patch', 'update', 'watch'],
    'plexus.io/plexusnodes/status': ['patch', 'update'],
    'plexus.io/plexusendpoints': ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
    'plexus.io/plexusendpoints/status': ['get', 'patch', 'update'],
  };

  // What the agent asks of the API server, by resource, with the verbs it uses (agent/daemon/src/kubernetes.cc,
  // k8s/src/informer.cc). Informers list and watch; the rest are the requests the agent makes.
  const kAgentCalls = {
    '/nodes': ['get', 'list', 'watch'],                   // IPAM kubernetes reads its Node; the node table
    '/pods': ['get', 'list', 'watch'],                    // this node's pods; a pod a CNI ADD needs
    '/namespaces': ['list', 'watch'],
    '/services': ['list', 'watch'],
    'discovery.k8s.io/endpointslices': ['list', 'watch'],
    'networking.k8s.io/networkpolicies': ['list', 'watch'],
    'cilium.io/ciliumnetworkpolicies': ['list', 'watch'],
    'cilium.io/ciliumclusterwidenetworkpolicies': ['list', 'watch'],
    'cilium.io/ciliumnetworkpolicies/status': ['patch'],  // status.nodes.<node>
    'cilium.io/ciliumclusterwidenetworkpolicies/status': ['patch'],
    'plexus.io/plexusidentities': ['list', 'watch', 'get', 'create', 'patch', 'delete'],
    'plexus.io/plexusnodes': ['list', 'watch', 'create', 'patch'],
    'plexus.io/plexusendpoints': ['list', 'watch', 'create', 'patch', 'delete'],
  };

  // Every API path literal in the agent's Kubernetes code, as group/resource[/subresource] with its version and
  // whether it was addressed in a namespace.
  function agentApiPaths() {
    const files = [];
    for (const dir of ['agent/daemon/src', 'agent/daemon/include/plexus/agent', 'k8s/src', 'k8s/include/plexus/k8s']) {
      for (const f of fs.readdirSync(path.join(repo, dir))) {
        if (/\.(cc|h)$/.test(f)) {
          files.push(path.join(repo, dir, f));
        }
      }
    }
    const out = new Map();
    for (const file of files) {
      const text = fs.readFileSync(file, 'utf8');
      for (const m of text.matchAll(/"(\/apis?\/[^"\s]*)"/g)) {
        const parts = m[1].split('/').filter((p) => p);
        const [group, version, rest] = parts[0] === 'api'
          ? ['', parts[1], parts.slice(2)] : [parts[1], parts[2], parts.slice(3)];
        if (!version || rest.length === 0) {
          continue;  // a group or discovery path
        }
        let res = rest;
        let namespaced = false;
        if (res[0] === 'namespaces' && res.length >= 3) {
          namespaced = true;
          res = res.slice(2);
        }
        const key = `${group}/${res[0]}${res.length >= 3 ? '/' + res[2] : ''}`;
        const seen = out.get(key) ?? { version, namespaced: false, files: new Set() };
        seen.namespaced ||= namespaced;
        seen.files.add(path.relative(repo, file));
        out.set(key, seen);
      }
    }
    return out;
  }

  function granted() {
    const role = find(render(), 'ClusterRole', 'plexus');
    const got = {};
    for (const rule of role.rules) {
      for (const group of rule.apiGroups) {
        for (const res of rule.resources) {
          got[`${group}/${res}`] = new Set([...(got[`${group}/${res}`] ?? []), ...rule.verbs]);
        }
      }
    }
    return got;
  }

  test('every API path in the agent is a known call, and the role grants each call its verbs', () => {
    const paths = agentApiPaths();
    assert.ok(paths.size >= 10, `found only ${[...paths.keys()]} in the agent sources`);
    for (const [key, where] of paths) {
      assert.ok(key in kAgentCalls,
        `${key} (in ${[...where.files].join(', ')}) is called by the agent but not listed in kAgentCalls: ` +
        'add it with its verbs, and the rule to templates/rbac.yaml');
    }
    const role = granted();
    for (const [key, verbs] of Object.entries(kAgentCalls)) {
      assert.ok(paths.has(key), `${key} is listed but no longer called by the agent: drop it (and its rule)`);
      for (const verb of verbs) {
        assert.ok(role[key] && role[key].has(verb), `ClusterRole plexus lacks ${verb} on ${key}`);
      }
    }
  });

  test('every custom resource the agent calls has its CRD in the chart, in the version and scope it uses', () => {
    const crds = render(['--include-crds']).filter((d) => d.kind === 'CustomResourceDefinition');
    for (const [key, where] of agentApiPaths()) {
      const [group, resource] = key.split('/');
      if (!['plexus.io', 'cilium.io'].includes(group)) {
        continue;  // built in
      }
      const crd = crds.find((c) => c.spec.group === group && c.spec.names.plural === resource);
      assert.ok(crd, `no CRD for ${group}/${resource} (called in ${[...where.files].join(', ')}) in helm/plexus/crds`);
      assert.ok(crd.spec.versions.some((v) => v.name === where.version && v.served),
        `${crd.metadata.name} does not serve ${where.version}`);
      if (where.namespaced) {
        assert.equal(crd.spec.scope, 'Namespaced', `${crd.metadata.name} is addressed in a namespace`);
      }
      if (key.endsWith('/status')) {
        assert.deepEqual(crd.spec.versions[0].subresources?.status, {}, `${crd.metadata.name} has no status subresource`);
      }
    }
  });

  test('verbs per resource exactly as listed', () => {
    const role = find(render(), 'ClusterRole', 'plexus');
    const got = {};
    for (const rule of role.rules) {
      assert.ok(!rule.resourceNames && !rule.nonResourceURLs, 'unexpected rule form');
      for (const group of rule.apiGroups) {
        for (const res of rule.resources) {
          const key = `${group}/${res}`;
          got[key] = [...new Set([...(got[key] ?? []), ...rule.verbs])].sort();
        }
      }
    }
    assert.deepEqual(got, Object.fromEntries(Object.entries(kRules).map(([k, v]) => [k, [...v].sort()])));
  });

  test('no wildcard and no secrets anywhere', () => {
    const role = find(render(), 'ClusterRole', 'plexus');
    const text = JSON.stringify(role.rules);
    assert.ok(!text.includes('*'), 'wildcard in ClusterRole');
    assert.ok(!/secret/i.test(text), 'secrets in ClusterRole');
  });

  test('binding ties the role to the agent ServiceAccount', () => {
    const docs = render();
    const binding = find(docs, 'ClusterRoleBinding', 'plexus');
    assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'plexus' });
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'plexus', namespace: 'kube-system' }]);
    find(docs, 'ServiceAccount', 'plexus');
  });
});

describe('failures', () => {
  test('kubeProxyReplacement=true without k8sServiceHost fails with the reason', () => {
    const r = template(['--set', 'kubeProxyReplacement=true']);
    assert.notEqual(r.status, 0);
    assert.ok(r.stderr.includes(kKprMessage), r.stderr);
  });

  test('bpf.masquerade=true without kube-proxy replacement fails with the reason; with it, it renders', () => {
    const r = template(['--set', 'bpf.masquerade=true']);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /bpf.masquerade=true needs kubeProxyReplacement=true/);
    const ok = template(['--set', 'bpf.masquerade=true', '--set', 'kubeProxyReplacement=true',
      '--set', 'k8sServiceHost=10.0.0.1']);
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /enable-bpf-masquerade: true/);
    const kpr = ['--set', 'bpf.masquerade=true', '--set', 'kubeProxyReplacement=true', '--set', 'k8sServiceHost=10.0.0.1',
      '--set', 'routingMode=native'];
    const native = template(kpr);
    assert.notEqual(native.status, 0);
    assert.match(native.stderr, /enableIPv4Masquerade=true with routingMode=native needs ipv4NativeRoutingCIDR/);
    assert.equal(template([...kpr, '--set', 'ipv4NativeRoutingCIDR=10.0.0.0/8']).status, 0);
  });

  test('enableIPv4Masquerade: iptables by default, BPF with bpf.masquerade, none when false', () => {
    const def = agentConfig();
    assert.equal(def['enable-ipv4-masquerade'], true);
    assert.equal(def['enable-bpf-masquerade'], false);
    const off = agentConfig(['--set', 'enableIPv4Masquerade=false', '--set', 'bpf.masquerade=true']);
    assert.equal(off['enable-ipv4-masquerade'], false);
    assert.equal(off['enable-bpf-masquerade'], false);
  });

  test('loadBalancer.mode: snat, dsr and hybrid render; dsr needs kube-proxy replacement; only opt dispatch', () => {
    assert.equal(agentConfig()['bpf-lb-mode'], 'snat');
    assert.equal(agentConfig()['bpf-lb-dsr-dispatch'], 'opt');
    for (const mode of ['dsr', 'hybrid']) {
      const kpr = ['--set', 'kubeProxyReplacement=true', '--set', 'k8sServiceHost=10.0.0.1'];
      assert.equal(agentConfig([...kpr, '--set', `loadBalancer.mode=${mode}`])['bpf-lb-mode'], mode);
      const r = template(['--set', `loadBalancer.mode=${mode}`, '--set', 'kubeProxyReplacement=false']);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, new RegExp(`loadBalancer.mode=${mode} needs kubeProxyReplacement=true`));
    }
    const ipip = template(['--set', 'loadBalancer.dsrDispatch=ipip']);
    assert.notEqual(ipip.status, 0);
    assert.match(ipip.stderr, /loadBalancer.dsrDispatch=ipip is not supported/);
  });

  test('policyEnforcementMode and policyAuditMode render the agent keys; an unknown mode is refused', () => {
    assert.equal(agentConfig()['enable-policy'], 'default');
    assert.equal(agentConfig()['policy-audit-mode'], false);
    const on = agentConfig(['--set', 'policyEnforcementMode=always', '--set', 'policyAuditMode=true']);
    assert.equal(on['enable-policy'], 'always');
    assert.equal(on['policy-audit-mode'], true);
    assert.notEqual(template(['--set', 'policyEnforcementMode=strict']).status, 0);
  });

  test('kubeProxyReplacementHealthzBindAddr renders the agent key, and only when set', () => {
    const on = template(['--set', 'kubeProxyReplacementHealthzBindAddr=0.0.0.0:10256']);
    assert.equal(on.status, 0, on.stderr);
    assert.match(on.stdout, /kube-proxy-replacement-healthz-bind-address: "?0\.0\.0\.0:10256"?\n/);
    assert.doesNotMatch(template().stdout, /kube-proxy-replacement-healthz-bind-address/);
    assert.notEqual(template(['--set', 'kubeProxyReplacementHealthzBindAddr=10256']).status, 0);
  });

  test('tunnelProtocol=geneve fails rendering, naming the key', () => {
    const r = template(['--set', 'tunnelProtocol=geneve']);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /tunnelProtocol=geneve: Geneve is not supported on this build/);
  });

  test('autoDirectNodeRoutes=true in tunnel mode fails rendering, naming both keys', () => {
    for (const args of [['--set', 'autoDirectNodeRoutes=true'],
      ['--set', 'autoDirectNodeRoutes=true', '--set', 'routingMode=tunnel']]) {
      const r = template(args);
      assert.notEqual(r.status, 0, `helm template ${args.join(' ')} should fail`);
      assert.match(r.stderr, /autoDirectNodeRoutes=true needs routingMode=native \(routingMode is tunnel\)/);
    }
  });

  test('unknown top-level key fails the schema', () => {
    expectFailure(['--set', 'foo=bar'], /Additional property foo is not allowed/);
  });

  test('unknown nested key fails the schema', () => {
    expectFailure(['--set', 'ipam.bogus=1'], /Additional property bogus is not allowed/);
    expectFailure(['--set', 'prometheus.typo=1'], /Additional property typo is not allowed/);
  });

  test('bad enum fails the schema', () => {
    expectFailure(['--set', 'ipam.mode=magic'], /ipam\.mode/);
    expectFailure(['--set', 'routingMode=bgp'], /routingMode/);
    expectFailure(['--set', 'loadBalancer.algorithm=roundrobin'], /loadBalancer\.algorithm/);
    expectFailure(['--set', 'tunnelProtocol=gre'], /tunnelProtocol/);
  });

  test('routing values out of range fail the schema', () => {
    expectFailure(['--set', 'tunnelPort=0'], /tunnelPort/);
    expectFailure(['--set', 'tunnelPort=70000'], /tunnelPort/);
    expectFailure(['--set', 'healthPort=-1'], /healthPort/);
    expectFailure(['--set', 'MTU=100'], /MTU/);
    expectFailure(['--set', 'MTU=70000'], /MTU/);
    expectFailure(['--set', 'ipv4NativeRoutingCIDR=10.0.0.0'], /ipv4NativeRoutingCIDR/);
    expectFailure(['--set', 'autoDirectNodeRoutes=yes'], /autoDirectNodeRoutes/);
  });

  test('a conntrackGCInterval that is not a duration fails the schema', () => {
    expectFailure(['--set', 'conntrackGCInterval=5 minutes'], /conntrackGCInterval/);
  });

  test('wrong types fail the schema', () => {
    expectFailure(['--set', 'kubeProxyReplacement=yes'], /kubeProxyReplacement/);
    expectFailure(['--set', 'prometheus.port=notaport'], /prometheus\.port/);
  });
});

// What a Cilium user writes (issue 15): each value renders where Cilium's chart means it to act.
describe('Cilium values', () => {
  // In the shape of a typical Cilium kube-proxy-replacement install, with Cilium's own spellings (quoted numbers,
  // string booleans, compound durations).
  const kCiliumKpr = `
kubeProxyReplacement: "true"
k8sServiceHost: 10.0.0.1
k8sServicePort: "6443"
routingMode: native
autoDirectNodeRoutes: true
ipv4NativeRoutingCIDR: 10.0.0.0/8
ipam:
  mode: kubernetes
loadBalancer:
  algorithm: maglev
maglev:
  tableSize: 65521
  hashSeed: AAECAwQFBgcICQoL
bpf:
  masquerade: false
  monitorAggregation: none
  ctTcpMax: 524288
  lbMapMax: 131072
  policyMapMax: 32768
hubble:
  enabled: true
  eventBufferCapacity: "8191"
cni:
  chainingMode: portmap
MTU: 1450
conntrackGCInterval: 1m30s
operator:
  replicas: 1
tolerations:
  - key: node-role.kubernetes.io/control-plane
    operator: Exists
    effect: NoSchedule
nodeSelector:
  kubernetes.io/os: linux
  plexus.io/node: "true"
extraArgs:
  - --debug=true
extraConfig:
  events-ring-size: 1048576
  lb-algorithm: random
`;

  test('a Cilium kube-proxy-replacement values file renders, and the config and DaemonSet carry it', () => {
    const args = valuesFile(kCiliumKpr);
    const cfg = agentConfig(args);
    assert.equal(cfg['kube-proxy-replacement'], true);
    assert.equal(cfg['enable-socket-lb'], true);
    assert.equal(cfg['k8s-service-port'], 6443);
    assert.equal(cfg['routing-mode'], 'native');
    assert.equal(cfg['ipam-mode'], 'kubernetes');
    assert.equal(cfg['maglev-table-size'], 65521);
    assert.equal(cfg['maglev-hash-seed'], 'AAECAwQFBgcICQoL');
    assert.equal(cfg['monitor-aggregation'], 'none');
    assert.equal(cfg['ct-map-size'], 524288);
    assert.equal(cfg['bpf-lb-map-max'], 131072);
    assert.equal(cfg['bpf-policy-map-max'], 32768);
    assert.equal(cfg['hubble-flow-buffer-size'], 8191);
    assert.equal(cfg.mtu, 1450);
    assert.equal(cfg['conntrack-gc-interval'], 90);
    assert.equal(cfg['events-ring-size'], 1048576);
    assert.equal(cfg['lb-algorithm'], 'random', 'extraConfig wins over loadBalancer.algorithm');
    const ds = daemonSet(args);
    const pod = ds.spec.template.spec;
    assert.deepEqual(pod.tolerations,
      [{ key: 'node-role.kubernetes.io/control-plane', operator: 'Exists', effect: 'NoSchedule' }]);
    assert.deepEqual(pod.nodeSelector, { 'kubernetes.io/os': 'linux', 'plexus.io/node': 'true' });
    const agent = agentContainer(ds);
    assert.deepEqual(agent.args, ['--debug=true']);
    assert.deepEqual(agent.env.find((e) => e.name === 'KUBERNETES_SERVICE_PORT'),
      { name: 'KUBERNETES_SERVICE_PORT', value: '6443' });
    assert.ok(!render(args).some((d) => d.kind === 'Deployment'), 'no operator Deployment');
  });

  test('tolerations: every taint by default, replaced by the value', () => {
    const custom = daemonSet(['--set', 'tolerations[0].key=dedicated', '--set', 'tolerations[0].operator=Equal',
      '--set', 'tolerations[0].value=net', '--set', 'tolerations[0].effect=NoSchedule']);
    assert.deepEqual(custom.spec.template.spec.tolerations,
      [{ key: 'dedicated', operator: 'Equal', value: 'net', effect: 'NoSchedule' }]);
    const none = daemonSet(['--set', 'tolerations=null']);
    assert.ok(!('tolerations' in none.spec.template.spec), 'tolerations=null renders none');
    expectFailure(['--set', 'tolerations=notalist'], /tolerations/);
  });

  test('affinity, podAnnotations, podLabels, priorityClassName, updateStrategy and extraEnv reach the DaemonSet', () => {
    const def = daemonSet();
    assert.equal(def.spec.template.spec.priorityClassName, 'system-node-critical');
    assert.deepEqual(def.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
    assert.ok(!('affinity' in def.spec.template.spec));
    const ds = daemonSet(['--set', 'podLabels.team=net', '--set', 'podAnnotations.owner=sre',
      '--set', 'priorityClassName=critical-net', '--set', 'updateStrategy.type=OnDelete',
      '--set', 'updateStrategy.rollingUpdate=null',
      '--set-json', 'affinity={"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"net","operator":"Exists"}]}]}}}',
      '--set-json', 'extraEnv=[{"name":"GODEBUG","value":"x=1"}]']);
    const pod = ds.spec.template;
    assert.equal(pod.metadata.labels.team, 'net');
    assert.equal(pod.metadata.labels['app.kubernetes.io/name'], 'plexus');  // the chart's own labels stay
    assert.equal(pod.metadata.annotations.owner, 'sre');
    assert.ok(pod.metadata.annotations['checksum/config']);
    assert.equal(pod.spec.priorityClassName, 'critical-net');
    assert.deepEqual(ds.spec.updateStrategy, { type: 'OnDelete' });
    assert.equal(pod.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]
      .matchExpressions[0].key, 'net');
    const env = agentContainer(ds).env;
    assert.deepEqual(env[env.length - 1], { name: 'GODEBUG', value: 'x=1' });
    assert.equal(env[0].name, 'PLEXUS_NODE_NAME');
    expectFailure(['--set-json', 'extraEnv=[{"value":"no name"}]'], /extraEnv/);
    expectFailure(['--set', 'updateStrategy.type=Recreate'], /updateStrategy/);
  });

  test('nodeSelector: linux nodes by default, replaced or extended by the value', () => {
    const ds = daemonSet(['--set', 'nodeSelector.pool=edge']);
    assert.deepEqual(ds.spec.template.spec.nodeSelector, { 'kubernetes.io/os': 'linux', pool: 'edge' });
    expectFailure([...valuesFile('nodeSelector:\n  pool: [a]\n')], /nodeSelector/);
  });

  test('extraArgs are appended to the agent command', () => {
    const agent = agentContainer(daemonSet(['--set', 'extraArgs={--debug=true,--mtu=1400}']));
    assert.deepEqual(agent.command, ['plexus-agent', '--config', '/etc/plexus/config.yaml']);
    assert.deepEqual(agent.args, ['--debug=true', '--mtu=1400']);
    expectFailure([...valuesFile('extraArgs:\n  - {a: 1}\n')], /extraArgs/);
  });

  test('extraConfig: new keys added, chart keys replaced (once), lists kept, maps refused', () => {
    const args = valuesFile('extraConfig:\n  events-ring-size: 65536\n  debug: true\n  devices: [eth0, eth1]\n' +
      '  k8s-kubeconfig-path: /etc/kube.conf\n');
    const cfg = agentConfig(args);
    assert.equal(cfg['events-ring-size'], 65536);
    assert.equal(cfg.debug, true);
    assert.deepEqual(cfg.devices, ['eth0', 'eth1']);
    assert.equal(cfg['k8s-kubeconfig-path'], '/etc/kube.conf');
    const text = find(render(args), 'ConfigMap', 'plexus-config').data['config.yaml'];
    assert.equal(text.match(/^debug:/gm).length, 1, 'a replaced key appears once');
    expectFailure([...valuesFile('extraConfig:\n  nested:\n    a: 1\n')], /extraConfig/);
  });

  test('a config change rolls the agents (checksum annotation)', () => {
    const sum = (args) => daemonSet(args).spec.template.metadata.annotations['checksum/config'];
    assert.notEqual(sum(['--set', 'extraConfig.debug=true']), sum([]));
  });

  test('operator.replicas is accepted and renders no operator', () => {
    const docs = render(['--set', 'operator.replicas=2']);
    assert.ok(!docs.some((d) => d.kind === 'Deployment'));
    expectFailure(['--set', 'operator.replicas=-1'], /operator\.replicas/);
    expectFailure(['--set', 'operator.bogus=1'], /Additional property bogus is not allowed/);
  });

  test('k8sServicePort: a number or a quoted number', () => {
    const base = ['--set', 'kubeProxyReplacement=true', '--set', 'k8sServiceHost=10.0.0.1'];
    const args = [...base, '--set-string', 'k8sServicePort=6443'];
    assert.equal(agentConfig(args)['k8s-service-port'], 6443);
    assert.equal(agentContainer(daemonSet(args)).env.find((e) => e.name === 'KUBERNETES_SERVICE_PORT').value, '6443');
    assert.equal(agentConfig([...base, '--set', 'k8sServicePort=7443'])['k8s-service-port'], 7443);
    expectFailure([...base, '--set-string', 'k8sServicePort=99999'], /k8sServicePort=99999: must be a port/);
    expectFailure([...base, '--set-string', 'k8sServicePort=0644'], /k8sServicePort/);
    expectFailure([...base, '--set-string', 'k8sServicePort=https'], /k8sServicePort/);
  });

  test('kubeProxyReplacement: booleans and the strings "true"/"false"', () => {
    const on = agentConfig(['--set-string', 'kubeProxyReplacement=true', '--set', 'k8sServiceHost=10.0.0.1']);
    assert.equal(on['kube-proxy-replacement'], true);
    assert.equal(on['enable-socket-lb'], true);
    const off = ['--set-string', 'kubeProxyReplacement=false'];
    assert.equal(agentConfig(off)['kube-proxy-replacement'], false);
    assert.equal(agentConfig(off)['enable-socket-lb'], false);
    assert.ok(!agentContainer(daemonSet(off)).env.some((e) => e.name.startsWith('KUBERNETES_SERVICE_')),
      'the string "false" is off');
    const r = template(['--set-string', 'kubeProxyReplacement=true']);
    assert.notEqual(r.status, 0);
    assert.ok(r.stderr.includes(kKprMessage), 'the string "true" needs k8sServiceHost too');
    expectFailure(['--set', 'kubeProxyReplacement=strict', '--set', 'k8sServiceHost=10.0.0.1'],
      /kubeProxyReplacement=strict is not supported: use true or false/);
  });

  test('conntrackGCInterval: compound durations in seconds, at most 24h', () => {
    const gc = (d) => agentConfig(['--set', `conntrackGCInterval=${d}`])['conntrack-gc-interval'];
    assert.equal(gc('1m30s'), 90);
    assert.equal(gc('1h2m3s'), 3723);
    assert.equal(gc('2h30m'), 9000);
    assert.equal(gc('1m08s'), 68);
    assert.equal(gc('24h'), 86400);
    assert.ok(!('conntrack-gc-interval' in agentConfig(['--set-string', 'conntrackGCInterval=0'])));
    expectFailure(['--set', 'conntrackGCInterval=25h'], /conntrackGCInterval=25h: at most 24h/);
    expectFailure(['--set', 'conntrackGCInterval=30s1m'], /conntrackGCInterval/);
    expectFailure(['--set-string', 'conntrackGCInterval=90'], /conntrackGCInterval/);
    expectFailure(['--set', 'conntrackGCInterval=500ms'], /conntrackGCInterval/);
  });

  test('maglev.tableSize and maglev.hashSeed', () => {
    assert.equal(agentConfig()['maglev-table-size'], 16381);
    assert.ok(!('maglev-hash-seed' in agentConfig()), 'empty seed: the agent default');
    const cfg = agentConfig(['--set', 'maglev.tableSize=251', '--set', 'maglev.hashSeed=JLfvgnHc2kaSUFaI']);
    assert.equal(cfg['maglev-table-size'], 251);
    assert.equal(cfg['maglev-hash-seed'], 'JLfvgnHc2kaSUFaI');
    expectFailure(['--set', 'maglev.tableSize=1000'], /maglev\.tableSize/);
    expectFailure(['--set', 'maglev.hashSeed=short'], /maglev\.hashSeed/);
  });

  test('bpf.monitorAggregation: medium or none; Cilium\'s low and maximum fail naming the key', () => {
    assert.equal(agentConfig()['monitor-aggregation'], 'medium');
    assert.equal(agentConfig(['--set', 'bpf.monitorAggregation=none'])['monitor-aggregation'], 'none');
    for (const level of ['low', 'maximum']) {
      expectFailure(['--set', `bpf.monitorAggregation=${level}`],
        new RegExp(`bpf\\.monitorAggregation=${level} is not supported`));
    }
    expectFailure(['--set', 'bpf.monitorAggregation=high'], /bpf\.monitorAggregation/);
  });

  test('bpf.ctTcpMax, bpf.lbMapMax, bpf.policyMapMax size the maps', () => {
    const def = agentConfig();
    assert.equal(def['ct-map-size'], 262144);
    assert.equal(def['bpf-lb-map-max'], 65536);
    assert.equal(def['bpf-policy-map-max'], 16384);
    const cfg = agentConfig(['--set', 'bpf.ctTcpMax=1048576', '--set', 'bpf.lbMapMax=262144',
      '--set', 'bpf.policyMapMax=4096']);
    assert.equal(cfg['ct-map-size'], 1048576);
    assert.equal(cfg['bpf-lb-map-max'], 262144);
    assert.equal(cfg['bpf-policy-map-max'], 4096);
    expectFailure(['--set', 'bpf.ctTcpMax=100'], /bpf\.ctTcpMax/);
    expectFailure(['--set', 'bpf.lbMapMax=0'], /bpf\.lbMapMax/);
    expectFailure(['--set', 'bpf.policyMapMax=0'], /bpf\.policyMapMax/);
  });

  test('MTU: 0 is automatic, and the default', () => {
    assert.equal(agentConfig().mtu, 0);
    assert.equal(agentConfig(['--set', 'MTU=0']).mtu, 0);
    assert.equal(agentConfig(['--set', 'MTU=9000']).mtu, 9000);
  });

  test('hubble.eventBufferCapacity: a number or a quoted number', () => {
    assert.equal(agentConfig()['hubble-flow-buffer-size'], 4095);
    assert.equal(agentConfig(['--set-string', 'hubble.eventBufferCapacity=65535'])['hubble-flow-buffer-size'], 65535);
    assert.equal(agentConfig(['--set', 'hubble.eventBufferCapacity=1023'])['hubble-flow-buffer-size'], 1023);
    expectFailure(['--set', 'hubble.eventBufferCapacity=0'], /hubble\.eventBufferCapacity/);
    expectFailure(['--set-string', 'hubble.eventBufferCapacity=2000000'],
      /hubble\.eventBufferCapacity=2000000: must be 1-1048576/);
  });

  test('cni.chainingMode: none and portmap render plexus-cni first with portmap; the others fail naming the key', () => {
    const conflist = (args) => JSON.parse(find(render(args), 'ConfigMap', 'plexus-config').data['05-plexus.conflist']);
    const def = conflist([]);
    assert.deepEqual(def.plugins.map((p) => p.type), ['plexus-cni', 'portmap']);
    assert.deepEqual(conflist(['--set', 'cni.chainingMode=portmap']), def);
    assert.deepEqual(conflist(['--set', 'cni.chainingMode=none']), def);
    expectFailure(['--set', 'cni.chainingMode=generic-veth'], /cni\.chainingMode=generic-veth is not supported/);
    expectFailure(['--set', 'cni.chainingMode=aws-cni'], /cni\.chainingMode=aws-cni is not supported/);
    expectFailure(['--set', 'cni.chainingMode=bogus'], /cni\.chainingMode/);
  });
});
