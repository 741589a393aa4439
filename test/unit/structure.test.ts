import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

// The architecture, checked: every import in src/ points down the layers below, and no module imports itself
// back through others. A new folder must be placed here deliberately.

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../../src');

/** Lower layers know nothing of higher ones; a folder may import its own layer and any below. */
const LAYERS: Record<string, number> = {
  errors: 0,
  log: 1,
  exec: 1,
  lock: 1,
  zfs: 2,
  transport: 3,
  retention: 4,
  replication: 5,
  observe: 6,
  cli: 7,
};

function sourceFiles(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** Relative imports of a file, resolved to the .ts files they name. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specifiers = [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)].map((match) => match[1] ?? '');
  return specifiers.map((specifier) => resolve(dirname(file), specifier).replace(/\.js$/, '.ts'));
}

function layerOf(file: string): string {
  return relative(SRC, file).split('/')[0] ?? '';
}

const graph = new Map(sourceFiles(SRC).map((file) => [file, importsOf(file)]));

test('every folder of src/ has a place in the layers', () => {
  const unplaced = [...new Set([...graph.keys()].map(layerOf))].filter((layer) => LAYERS[layer] === undefined);
  assert.deepEqual(unplaced, []);
});

test('no import in src/ points up the layers', () => {
  const upward: string[] = [];
  for (const [file, imports] of graph) {
    for (const target of imports) {
      if ((LAYERS[layerOf(target)] ?? 99) > (LAYERS[layerOf(file)] ?? -1)) {
        upward.push(`${relative(SRC, file)} -> ${relative(SRC, target)}`);
      }
    }
  }
  assert.deepEqual(upward, []);
});

test('no circular import in src/', () => {
  const cycles: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const path: string[] = [];
  const visit = (file: string) => {
    if (state.get(file) === 'done') return;
    if (state.get(file) === 'visiting') {
      cycles.push([...path.slice(path.indexOf(file)), file].map((name) => relative(SRC, name)).join(' -> '));
      return;
    }
    state.set(file, 'visiting');
    path.push(file);
    for (const target of graph.get(file) ?? []) visit(target);
    path.pop();
    state.set(file, 'done');
  };
  for (const file of graph.keys()) visit(file);
  assert.deepEqual(cycles, []);
});

test('the check sees imports: the layers are really connected', () => {
  const edges = [...graph.values()].reduce((sum, imports) => sum + imports.length, 0);
  assert.ok(edges > 50, `only ${edges} imports found: the pattern no longer matches the sources`);
  assert.ok(graph.get(join(SRC, 'cli/main.ts'))?.includes(join(SRC, 'replication/run-once.ts')));
});
