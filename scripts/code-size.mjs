#!/usr/bin/env node
// Lines per source file and its longest function, for the notes of refactoring issues.
// Usage: node scripts/code-size.mjs [file.ts ...]   (default: every non-test .ts under packages/ and apps/)
// Run it in a worktree of another commit to compare (git worktree add /tmp/before <commit>).
import { readFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import ts from 'typescript'

// Paths are from the repository's root, wherever this runs.
process.chdir(execFileSync('git', ['rev-parse', '--show-toplevel'], { encoding: 'utf8' }).trim())
const files =
  process.argv.length > 2
    ? process.argv.slice(2)
    : execFileSync('git', ['ls-files', 'packages/*/src/**.ts', 'apps/*/src/**.ts'], {
        encoding: 'utf8',
      })
        .split('\n')
        .filter((f) => f !== '' && !/\.test(-helpers)?\.ts$|\.capture\.ts$|\/testing\//.test(f))

function nameOf(node, sf) {
  if (node.name !== undefined) return node.name.getText(sf)
  if (ts.isConstructorDeclaration(node)) return 'constructor'
  const parent = node.parent
  if (parent && ts.isVariableDeclaration(parent)) return parent.name.getText(sf)
  if (parent && ts.isPropertyAssignment(parent)) return parent.name.getText(sf)
  return '(anonymous)'
}

for (const file of files) {
  const text = readFileSync(file, 'utf8')
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true)
  let longest = { name: '-', lines: 0 }
  const visit = (node) => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body !== undefined) {
      const start = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line
      const end = sf.getLineAndCharacterOfPosition(node.getEnd()).line
      const lines = end - start + 1
      if (lines > longest.lines) longest = { name: nameOf(node, sf), lines }
    }
    ts.forEachChild(node, visit)
  }
  visit(sf)
  const lines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0)
  console.log(`${file}\t${lines}\t${longest.name}\t${longest.lines}`)
}
