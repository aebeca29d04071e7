// src/rpc/messages.ts describes proto/kdfs.proto's messages for TypeScript by
// hand (it says which fields old records lack, and which strings are states).
// This test keeps the two in step: every message has its interface, with the
// same fields, each of a type that matches the field's, and the services'
// methods take and return what the .proto says.
import fs from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';
import { expect, it } from 'vitest';

const repo = path.resolve(__dirname, '../..');
const proto = protobuf.loadSync(path.join(repo, 'proto/kdfs.proto')).lookup('kdfs') as protobuf.Namespace;
// (the TypeScript installed is the native compiler, without a JavaScript API:
// messages.ts is read by this small parser, which knows its few forms)
const text = fs.readFileSync(path.join(repo, 'src/rpc/messages.ts'), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');

/** Splits at `separator` where no bracket is open. */
function splitTop(body: string, separator: RegExp): string[] {
  const pieces: string[] = [];
  let depth = 0;
  let from = 0;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if ('{[(<'.includes(c)) depth++;
    else if ('}])>'.includes(c)) depth--;
    else if (depth === 0 && separator.test(c)) {
      pieces.push(body.slice(from, i));
      from = i + 1;
    }
  }
  pieces.push(body.slice(from));
  return pieces.map((p) => p.trim()).filter((p) => p.length > 0);
}

/** The body of the braces that open at `open`. */
function braced(open: number): string {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === '{') depth++;
    if (text[i] === '}' && --depth === 0) return text.slice(open + 1, i);
  }
  throw new Error('messages.ts: unbalanced braces');
}

/** The members of each interface or object type alias: name to type text. */
const shapes = new Map<string, Map<string, string>>();
/** Type aliases that are unions of string literals (states carried as strings). */
const stringUnions = new Set<string>();
const bases = new Map<string, string[]>();
for (const match of text.matchAll(/^export (interface|type) (\w+)\s*(?:extends ([\w, ]+))?\s*(=)?\s*(?=\S)/gm)) {
  const at = match.index! + match[0].length;
  if (text[at] !== '{') {
    const alias = text.slice(at, text.indexOf(';', at));
    if (splitTop(alias, /\|/).every((t) => /^'[^']*'$/.test(t))) stringUnions.add(match[2]);
    continue;
  }
  const fields = new Map<string, string>();
  for (const member of splitTop(braced(at), /[;\n]/)) {
    const field = /^(\w+)\??\s*:\s*([\s\S]+)$/.exec(member);
    if (field) fields.set(field[1], field[2].trim());
  }
  shapes.set(match[2], fields);
  if (match[3]) bases.set(match[2], match[3].split(',').map((b) => b.trim()));
}
for (const [name, extended] of bases) {
  for (const base of extended) for (const [field, type] of shapes.get(base) ?? []) shapes.get(name)!.set(field, type);
}

const NUMBERS = new Set(['int32', 'uint32', 'sint32', 'fixed32', 'sfixed32', 'int64', 'uint64', 'sint64', 'fixed64', 'sfixed64', 'double', 'float']);

/** The TypeScript type names one value of a field of a proto type may have
 *  (enums decode as their numbers). */
function accepted(protoType: string, resolved: protobuf.ReflectionObject | null = null): (name: string) => boolean {
  if (resolved instanceof protobuf.Enum) return (name) => name === 'number';
  if (NUMBERS.has(protoType)) return (name) => name === 'number';
  if (protoType === 'bool') return (name) => name === 'boolean';
  if (protoType === 'bytes') return (name) => name === 'Buffer' || name === 'Uint8Array';
  if (protoType === 'string') return (name) => name === 'string' || stringUnions.has(name) || /^'.*'$/.test(name);
  return (name) => name === protoType;
}

/** The type names a TypeScript type is made of, without null, undefined and arrays. */
function parts(type: string): { names: string[]; array: boolean } {
  const union = splitTop(type, /\|/);
  if (union.length > 1) {
    const each = union.map(parts);
    return { names: each.flatMap((p) => p.names), array: each.some((p) => p.array) };
  }
  if (type.endsWith('[]')) return { names: parts(type.slice(0, -2)).names, array: true };
  if (type.startsWith('(') && type.endsWith(')')) return parts(type.slice(1, -1));
  return { names: type === 'null' || type === 'undefined' ? [] : [type], array: false };
}

function mismatches(message: protobuf.Type): string[] {
  const fields = shapes.get(message.name);
  if (!fields) return [`${message.name}: no interface in messages.ts`];
  const found: string[] = [];
  for (const field of message.fieldsArray) {
    const node = fields.get(field.name);
    if (!node) {
      found.push(`${message.name}.${field.name}: not in messages.ts`);
      continue;
    }
    const where = `${message.name}.${field.name} (${field.repeated ? 'repeated ' : ''}${field.map ? 'map ' : ''}${field.type}) is ${node}`;
    if (field.map) {
      const value = /^Record<string,\s*(.+)>$|^\{\s*\[\w+: string\]:\s*(.+?);?\s*\}$/.exec(node);
      if (!value || !accepted(field.type)((value[1] ?? value[2]).trim())) found.push(where);
      continue;
    }
    const { names, array } = parts(node);
    if (array !== field.repeated || names.length === 0 || !names.every(accepted(field.type, field.resolve().resolvedType))) found.push(where);
  }
  for (const name of fields.keys()) {
    if (!message.fields[name]) found.push(`${message.name}.${name}: in messages.ts, not in the .proto`);
  }
  return found;
}

it('every message of the .proto has an interface with the same fields, of matching types', () => {
  const messages = proto.nestedArray.filter((n): n is protobuf.Type => n instanceof protobuf.Type);
  expect(messages.length).toBeGreaterThan(50);
  expect(messages.flatMap(mismatches)).toEqual([]);
});

it('the methods of each service take and return the messages the .proto says', () => {
  for (const [service, methodsType] of [['Meta', 'MetaMethods'], ['Agent', 'AgentMethods']] as const) {
    const methods = (proto.lookup(service) as protobuf.Service).methodsArray;
    const declared = shapes.get(methodsType)!;
    expect(declared, methodsType).toBeDefined();
    const found: string[] = [];
    for (const method of methods) {
      const node = declared.get(method.name);
      const pair = node && /^\[.*\]$/.test(node) ? splitTop(node.slice(1, -1), /,/) : null;
      const wanted = [method.requestType, method.responseType];
      if (!pair || pair.join() !== wanted.join()) found.push(`${service}.${method.name}: [${wanted.join(', ')}] in the .proto, ${node ?? 'nothing'} in messages.ts`);
    }
    for (const name of declared.keys()) if (!methods.some((m) => m.name === name)) found.push(`${methodsType}.${name}: not a method of ${service}`);
    expect(found).toEqual([]);
  }
});
