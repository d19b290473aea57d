// An in-memory cgroupfs that follows the kernel's documented rules
// (Documentation/admin-guide/cgroup-v2.rst and cgroup-v1/*.rst): mkdir
// creates the interface files of the enabled controllers, the "no internal
// processes" rule, EBUSY on rmdir of a populated cgroup, ENOENT for
// controllers that are not available. Used to unit-test the driver this
// machine cannot run for real.
import { dirname, join } from 'node:path';
import { errnoError, type CgroupFileHandle, type CgroupFs } from '../../src/sandbox/cgroup/fs.js';

interface Node {
  files: Map<string, string>;
  procs: Set<number>;
  version: 1 | 2;
  controllers: string[];
  isRoot: boolean;
}

const V2_FILES: Record<string, Record<string, string>> = {
  memory: {
    'memory.max': 'max\n', 'memory.current': '0\n', 'memory.peak': '0\n', 'memory.swap.max': 'max\n',
    'memory.events': 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n', 'memory.oom.group': '0\n',
  },
  cpu: { 'cpu.max': 'max 100000\n' },
  pids: { 'pids.max': 'max\n', 'pids.current': '0\n', 'pids.events': 'max 0\n' },
};

const V1_FILES: Record<string, Record<string, string>> = {
  memory: {
    'memory.limit_in_bytes': '9223372036854771712\n', 'memory.memsw.limit_in_bytes': '9223372036854771712\n',
    'memory.usage_in_bytes': '0\n', 'memory.max_usage_in_bytes': '0\n',
    'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 0\n',
  },
  cpu: { 'cpu.cfs_period_us': '100000\n', 'cpu.cfs_quota_us': '-1\n', 'cpu.stat': 'nr_periods 0\nnr_throttled 0\nthrottled_time 0\n' },
  cpuacct: { 'cpuacct.usage': '0\n' },
  pids: { 'pids.max': 'max\n', 'pids.current': '0\n', 'pids.events': 'max 0\n' },
};

export class FakeCgroupFs implements CgroupFs {
  readonly nodes = new Map<string, Node>();
  readonly writes: Array<[string, string]> = [];

  /** A cgroup2 mount at `root` with `controllers` available. */
  addV2Root(root: string, controllers: string[]): this {
    this.nodes.set(root, { files: new Map([['cgroup.controllers', `${controllers.join(' ')}\n`], ['cgroup.subtree_control', '\n'], ['cgroup.stat', 'nr_descendants 0\n']]), procs: new Set(), version: 2, controllers, isRoot: true });
    return this;
  }

  /** A v1 hierarchy at `root` for `controllers`. */
  addV1Root(root: string, controllers: string[]): this {
    const files = new Map<string, string>();
    for (const controller of controllers) for (const [name, value] of Object.entries(V1_FILES[controller] ?? {})) files.set(name, value);
    this.nodes.set(root, { files, procs: new Set(), version: 1, controllers, isRoot: true });
    return this;
  }

  /** Creates nested directories as the system already had them. */
  addExisting(path: string): this {
    if (!this.nodes.has(dirname(path))) this.addExisting(dirname(path));
    if (!this.nodes.has(path)) this.mkdir(path);
    return this;
  }

  addProcess(path: string, pid: number): this {
    this.node(path).procs.add(pid);
    return this;
  }

  private node(path: string): Node {
    const node = this.nodes.get(path);
    if (!node) throw errnoError('ENOENT', path);
    return node;
  }

  private children(path: string): string[] {
    return [...this.nodes.keys()].filter((p) => dirname(p) === path && p !== path);
  }

  private enabled(node: Node): string[] {
    return (node.files.get('cgroup.subtree_control') ?? '').trim().split(/\s+/).filter(Boolean);
  }

  mkdir(path: string): void {
    if (this.nodes.has(path)) throw errnoError('EEXIST', path);
    const parent = this.node(dirname(path));
    const files = new Map<string, string>();
    if (parent.version === 2) {
      const available = this.enabled(parent);
      files.set('cgroup.controllers', `${available.join(' ')}\n`);
      files.set('cgroup.subtree_control', '\n');
      files.set('cgroup.kill', '');
      files.set('cgroup.events', 'populated 0\nfrozen 0\n');
      files.set('cpu.stat', 'usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n');
      for (const controller of available) for (const [name, value] of Object.entries(V2_FILES[controller] ?? {})) files.set(name, value);
    } else {
      for (const controller of parent.controllers) for (const [name, value] of Object.entries(V1_FILES[controller] ?? {})) files.set(name, value);
    }
    this.nodes.set(path, { files, procs: new Set(), version: parent.version, controllers: parent.controllers, isRoot: false });
  }

  rmdir(path: string): void {
    const node = this.node(path);
    if (node.isRoot) throw errnoError('EBUSY', path);
    if (node.procs.size || this.children(path).length) throw errnoError('EBUSY', path);
    this.nodes.delete(path);
  }

  read(path: string): string {
    const node = this.nodes.get(dirname(path));
    const name = path.slice(dirname(path).length + 1);
    if (node && name === 'cgroup.procs') return [...node.procs].map((pid) => `${pid}\n`).join('');
    // A child's available controllers are whatever its parent enables, now.
    if (node && node.version === 2 && !node.isRoot && name === 'cgroup.controllers') return `${this.enabled(this.node(dirname(dirname(path)))).join(' ')}\n`;
    const value = node?.files.get(name);
    if (value === undefined) throw errnoError('ENOENT', path);
    return value;
  }

  exists(path: string): boolean {
    if (this.nodes.has(path)) return true;
    const node = this.nodes.get(dirname(path));
    const name = path.slice(dirname(path).length + 1);
    return !!node && (name === 'cgroup.procs' || node.files.has(name));
  }

  listDirs(path: string): string[] {
    this.node(path);
    return this.children(path).map((p) => p.slice(path.length + 1));
  }

  write(path: string, value: string): void {
    const dir = dirname(path);
    const node = this.node(dir);
    const name = path.slice(dir.length + 1);
    this.writes.push([path, value]);
    if (name === 'cgroup.procs') return this.moveProcess(dir, node, Number(value));
    if (name === 'cgroup.subtree_control') return this.changeSubtree(dir, node, value);
    if (!node.files.has(name)) throw errnoError('ENOENT', path);
    if (name === 'cgroup.kill') {
      for (const [p, n] of this.nodes) if (p === dir || p.startsWith(`${dir}/`)) n.procs.clear();
      return;
    }
    if (name === 'memory.max' || name === 'memory.swap.max' || name === 'pids.max') {
      if (!/^(max|\d+)$/.test(value.trim())) throw errnoError('EINVAL', `${path}: ${value}`);
    }
    if (name === 'cpu.max' && !/^(max|\d+) \d+$/.test(value.trim())) throw errnoError('EINVAL', `${path}: ${value}`);
    // memory.txt (v1): the memory limit may never exceed the memory+swap limit.
    const memsw = Number(node.files.get('memory.memsw.limit_in_bytes') ?? Infinity);
    if (name === 'memory.limit_in_bytes' && Number(value) > memsw) throw errnoError('EINVAL', `${path}: ${value} > memsw ${memsw}`);
    if (name === 'memory.memsw.limit_in_bytes' && Number(value) < Number(node.files.get('memory.limit_in_bytes') ?? 0)) throw errnoError('EINVAL', `${path}: ${value} < memory limit`);
    if (name === 'memory.peak') {
      node.files.set(name, node.files.get('memory.current') ?? '0\n');
      return;
    }
    node.files.set(name, value.endsWith('\n') ? value : `${value}\n`);
  }

  private moveProcess(dir: string, node: Node, pid: number): void {
    // v2: no process in a cgroup that hands controllers to children (root exempt).
    if (node.version === 2 && !node.isRoot && this.enabled(node).length) throw errnoError('EBUSY', `${dir} has controllers enabled for its children`);
    for (const [path, other] of this.nodes) if (other.version === node.version && path !== dir) other.procs.delete(pid);
    node.procs.add(pid);
  }

  private changeSubtree(dir: string, node: Node, value: string): void {
    const enabled = new Set(this.enabled(node));
    const available = this.read(join(dir, 'cgroup.controllers')).trim().split(/\s+/);
    for (const token of value.trim().split(/\s+/)) {
      const controller = token.slice(1);
      if (token.startsWith('+')) {
        if (!available.includes(controller)) throw errnoError('ENOENT', `controller ${controller} not available`);
        if (!node.isRoot && node.procs.size) throw errnoError('EBUSY', 'cgroup has processes (no internal processes rule)');
        enabled.add(controller);
        for (const child of this.children(dir)) {
          const files = this.node(child).files;
          for (const [name, initial] of Object.entries(V2_FILES[controller] ?? {})) if (!files.has(name)) files.set(name, initial);
        }
      } else if (token.startsWith('-')) enabled.delete(controller);
      else throw errnoError('EINVAL', token);
    }
    node.files.set('cgroup.subtree_control', `${[...enabled].join(' ')}\n`);
  }

  /** Sets a file's content as the kernel would report it. */
  setFile(path: string, value: string): void {
    this.node(dirname(path)).files.set(path.slice(dirname(path).length + 1), value);
  }

  open(path: string, _mode: 'r' | 'rw'): CgroupFileHandle {
    return { read: () => this.read(path), write: (value) => this.write(path, value), close: () => {} };
  }

  join(...parts: string[]): string {
    return join(...parts);
  }
}
