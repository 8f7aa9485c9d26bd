#!/usr/bin/env node
// Generates the TypeScript side of a BPF object's contract from the object's
// BTF (after cilium/ebpf's bpf2go): every map's type, key/value type and
// size, max_entries and flags; the layout (size, member offsets and sizes)
// of every named struct; every enum. Run at build time after `make -C bpf`
// (scripts/setup.sh does), so layouts are never copied by hand.
//
//   node scripts/gen-bpf-contract.mjs bpf/build/xdp_filter.bpf.o src/fastpath/generated/filter.ts
//
// Reads `bpftool -j btf dump file OBJ` (format raw, as JSON).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';

const [obj, out] = process.argv.slice(2);
if (!obj || !out) {
  console.error('usage: gen-bpf-contract.mjs OBJECT.bpf.o OUT.ts');
  process.exit(2);
}

// enum values above 2^53 (bpftool prints 32-bit unsigned enumerators sign-extended to 64 bits) stay strings
const json = execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', obj], { encoding: 'utf8', maxBuffer: 64 << 20 }).replace(/"val":(-?\d{16,})/g, '"val":"$1"');
const { types } = JSON.parse(json);
const byId = new Map(types.map((t) => [t.id, t]));
const get = (id) => {
  const t = byId.get(id);
  if (!t) throw new Error(`${obj}: BTF type ${id} is missing`);
  return t;
};

/** Follows typedefs and qualifiers. */
function resolve(id) {
  let t = get(id);
  while (['TYPEDEF', 'CONST', 'VOLATILE', 'RESTRICT', 'TYPE_TAG'].includes(t.kind)) t = get(t.type_id);
  return t;
}

function sizeOf(id) {
  const t = resolve(id);
  switch (t.kind) {
    case 'INT':
    case 'ENUM':
    case 'ENUM64':
    case 'STRUCT':
    case 'UNION':
    case 'FLOAT':
      return t.size;
    case 'PTR':
      return 8;
    case 'ARRAY':
      return t.nr_elems * sizeOf(t.type_id);
    default:
      throw new Error(`${obj}: no size for BTF ${t.kind} ${t.name} (id ${t.id})`);
  }
}

/** A C-ish name for a type (for messages and the BTF check when adopting pins). */
function typeName(id) {
  const t = get(id);
  switch (t.kind) {
    case 'TYPEDEF':
    case 'INT':
    case 'FLOAT':
      return t.name;
    case 'STRUCT':
      return `struct ${t.name}`;
    case 'UNION':
      return `union ${t.name}`;
    case 'ENUM':
    case 'ENUM64':
      return `enum ${t.name}`;
    case 'ARRAY':
      return `${typeName(t.type_id)}[${t.nr_elems}]`;
    case 'PTR':
      return `${typeName(t.type_id)} *`;
    case 'CONST':
    case 'VOLATILE':
      return typeName(t.type_id);
    default:
      return t.kind.toLowerCase();
  }
}

// __uint(name, N) is `int (*name)[N]`; __type(name, T) is `T *name`
const MAP_TYPES = {
  1: 'hash', 2: 'array', 3: 'prog_array', 4: 'perf_event_array', 5: 'percpu_hash', 6: 'percpu_array', 9: 'lru_hash', 10: 'lru_percpu_hash',
  11: 'lpm_trie', 12: 'array_of_maps', 13: 'hash_of_maps', 27: 'ringbuf',
};
const uintOf = (m) => get(resolve(m.type_id).kind === 'PTR' ? resolve(m.type_id).type_id : m.type_id).nr_elems;

const maps = {};
const mapsSec = types.find((t) => t.kind === 'DATASEC' && t.name === '.maps');
for (const v of mapsSec?.vars ?? []) {
  const variable = get(v.type_id);
  const def = resolve(variable.type_id);
  const m = Object.fromEntries(def.members.map((x) => [x.name, x]));
  const type = uintOf(m.type);
  const spec = { type: MAP_TYPES[type] ?? `type_${type}`, maxEntries: m.max_entries ? uintOf(m.max_entries) : 0, flags: m.map_flags ? uintOf(m.map_flags) : 0 };
  if (m.key) {
    const k = resolve(m.key.type_id).type_id; // pointer to the key type
    Object.assign(spec, { keySize: sizeOf(k), keyType: typeName(k) });
  } else if (m.key_size) spec.keySize = uintOf(m.key_size);
  if (m.value) {
    const vt = resolve(m.value.type_id).type_id;
    Object.assign(spec, { valueSize: sizeOf(vt), valueType: typeName(vt) });
  } else if (m.values) Object.assign(spec, { keySize: spec.keySize ?? 4, valueSize: 4, valueType: 'map fd' }); // map-in-map: `__array(values, ...)`, an fd
  else if (m.value_size) spec.valueSize = uintOf(m.value_size);
  maps[variable.name] = spec;
}

const structs = {};
for (const t of types) {
  if (t.kind !== 'STRUCT' || t.name === '(anon)' || structs[t.name]) continue;
  const members = {};
  for (const mem of t.members) {
    if (mem.bitfield_size) {
      members[mem.name] = { bitfield: true };
      continue;
    }
    const r = resolve(mem.type_id);
    members[mem.name] = { offset: mem.bits_offset / 8, size: sizeOf(mem.type_id), ...(r.kind === 'ARRAY' ? { count: r.nr_elems } : {}) };
  }
  structs[t.name] = { size: t.size, members };
}
// only the structs maps use, the contract's and their members' (not vmlinux's)
const wanted = new Set();
const want = (name) => {
  if (!structs[name] || wanted.has(name)) return;
  wanted.add(name);
  for (const [m, v] of Object.entries(structs[name].members)) if (v.bitfield) throw new Error(`${obj}: struct ${name}.${m} is a bit field; the generated codecs do not handle those`);
  const t = types.find((x) => x.kind === 'STRUCT' && x.name === name);
  for (const mem of t.members) {
    let r = resolve(mem.type_id);
    while (r.kind === 'ARRAY') r = resolve(r.type_id);
    if (r.kind === 'STRUCT') want(r.name);
  }
};
for (const m of Object.values(maps)) for (const ty of [m.keyType, m.valueType]) if (ty?.startsWith('struct ')) want(ty.slice(7));
for (const name of Object.keys(structs)) if (name.startsWith('filter_contract')) want(name);

const enums = {};
for (const t of types) {
  if (t.kind !== 'ENUM' || t.name === '(anon)') continue;
  // 4-byte enums: the unsigned 32-bit value (the contract's enumerators are all u32 constants)
  enums[t.name] = Object.fromEntries(t.values.map((v) => [v.name, t.size <= 4 ? Number(BigInt.asUintN(32, BigInt(v.val))) : Number(v.val)]));
}

const rel = path.relative(process.cwd(), obj);
const src = `// Generated by scripts/gen-bpf-contract.mjs from the BTF of ${rel}. Do not edit:
// change the BPF side (bpf/include/*.h) and rebuild (scripts/setup.sh).
/* eslint-disable */

/** Every map the object declares: type, key/value (BTF type name and bytes), entries, flags. */
export const MAPS = ${JSON.stringify(maps, null, 2)} as const;

/** Named structs maps and the contract use: size and member offsets/sizes in bytes. */
export const STRUCTS = ${JSON.stringify(Object.fromEntries([...wanted].sort().map((n) => [n, structs[n]])), null, 2)} as const;

/** Every named enum of the object (the contract's constants are enumerators: BTF has no #defines). */
export const ENUMS = ${JSON.stringify(enums, null, 2)} as const;

export type MapName = keyof typeof MAPS;
export const MAP_NAMES = Object.keys(MAPS) as MapName[];
`;
mkdirSync(path.dirname(out), { recursive: true });
if (!existsSync(out) || readFileSync(out, 'utf8') !== src) writeFileSync(out, src);
