#!/usr/bin/env node
// The breaking-change gate: compares openapi/sessions.yaml with its version at a git ref and
// fails with a readable list when the change would break existing clients.
//
//   node tools/breaking-changes.mjs BASE_REF              (npm run breaking-changes -- BASE_REF)
//   node tools/breaking-changes.mjs --before OLD.yaml --after NEW.yaml
//
// The diff engine is api-smart-diff. Its classification of schema constraints is corrected
// here by one rule (see `constraintClass`): a change that lets the server ACCEPT fewer values
// breaks callers, a change that lets it SEND more values breaks readers. api-smart-diff 1.0.6
// gets several of these backwards (a response property made nullable is "non-breaking", a
// narrowed request enum or a changed query parameter type too); tests/test_breaking_changes.py
// pins each case.
//
// A deliberate break passes when `info.version` gets a higher major version, or when the exact
// change is listed, with a reason, in openapi/accepted-breaking-changes.yaml under the new
// `info.version` (entries count only while that version is new, so they never carry over).
// Exit status: 0 no unaccepted break, 1 unaccepted breaks, 2 usage or git error.

import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { apiCompare } from 'api-smart-diff'
import yaml from 'js-yaml'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const DEFAULT_SPEC = path.join(ROOT, 'openapi', 'sessions.yaml')
const DEFAULT_ACCEPTED = path.join(ROOT, 'openapi', 'accepted-breaking-changes.yaml')
const METHODS = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'])

// Keywords whose change makes the set of allowed values smaller ("narrows") or larger ("widens").
const UPPER_BOUNDS = new Set(['maximum', 'maxLength', 'maxItems', 'maxProperties'])
const LOWER_BOUNDS = new Set(['minimum', 'minLength', 'minItems', 'minProperties'])
const RESTRICTIONS = new Set(['pattern', 'format', 'multipleOf', 'uniqueItems', 'exclusiveMaximum', 'exclusiveMinimum'])

function usage (message) {
  console.error(`breaking-changes: ${message}`)
  console.error('usage: node tools/breaking-changes.mjs BASE_REF [--spec FILE] [--accepted FILE]')
  console.error('       node tools/breaking-changes.mjs --before FILE --after FILE [--accepted FILE]')
  process.exit(2)
}

function parseArgs (argv) {
  const options = { spec: DEFAULT_SPEC, accepted: DEFAULT_ACCEPTED }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (['--spec', '--accepted', '--before', '--after'].includes(arg)) {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`)
      options[arg.slice(2)] = argv[++i]
    } else if (arg.startsWith('-')) {
      usage(`unknown option ${arg}`)
    } else if (options.ref === undefined) {
      options.ref = arg
    } else {
      usage(`unexpected argument ${arg}`)
    }
  }
  if (options.before || options.after) {
    if (!options.before || !options.after || options.ref) usage('give --before and --after, or a git ref')
  } else if (!options.ref) {
    usage('name the git ref to compare with, e.g. main or HEAD~1')
  }
  return options
}

function load (text, where) {
  try {
    // CORE_SCHEMA: dates stay strings, as in the served JSON.
    return yaml.load(text, { schema: yaml.CORE_SCHEMA })
  } catch (error) {
    usage(`${where} is not valid YAML: ${error.message}`)
  }
}

function git (args, cwd) {
  return execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 })
}

/** The spec at `ref`, or null when the file did not exist there. */
function specAtRef (specPath, ref) {
  const dir = path.dirname(path.resolve(specPath))
  let top
  try {
    top = git(['rev-parse', '--show-toplevel'], dir).trim()
    git(['rev-parse', '--verify', '--quiet', `${ref}^{commit}`], dir)
  } catch {
    usage(`${ref} is not a commit of the git repository at ${dir}`)
  }
  const relative = path.relative(top, fs.realpathSync(path.resolve(specPath))).split(path.sep).join('/')
  try {
    return load(git(['show', `${ref}:${relative}`], top), `${relative} at ${ref}`)
  } catch {
    return null
  }
}

// ---- where a change is, in words -------------------------------------------------------------

function deref (doc, node) {
  for (let i = 0; node && typeof node === 'object' && typeof node.$ref === 'string' && i < 32; i++) {
    node = node.$ref.replace(/^#\//, '').split('/')
      .map(part => part.replace(/~1/g, '/').replace(/~0/g, '~'))
      .reduce((at, key) => (at == null ? undefined : at[key]), doc)
  }
  return node
}

function fieldPath (segments) {
  let field = ''
  for (let i = 0; i < segments.length; i++) {
    if (segments[i] === 'properties' && i + 1 < segments.length) field += `.${segments[++i]}`
    else if (segments[i] === 'items') field += '[]'
    else if (segments[i] === 'additionalProperties') field += '{*}'
    else break
  }
  return field.replace(/^\./, '')
}

/** { operation, where, schemaAt, context } for a diff under `paths`. */
function locate (diff, before, after) {
  const [, route, method, ...rest] = diff.path
  const operation = METHODS.has(method) ? `${method.toUpperCase()} ${route}` : `${route}`
  const doc = diff.action === 'add' ? after : before
  const schemaAt = rest.indexOf('schema')
  let where = ''
  let context = null
  if (rest[0] === 'parameters' && rest.length > 1) {
    const parameter = deref(doc, doc?.paths?.[route]?.[method]?.parameters?.[rest[1]]) || {}
    where = `${parameter.in ?? ''} parameter \`${parameter.name ?? rest[1]}\``.trim()
    context = 'request'
  } else if (rest[0] === 'requestBody') {
    where = 'request body'
    context = 'request'
  } else if (rest[0] === 'responses' && rest.length > 1) {
    where = `response ${rest[1]}`
    if (rest[2] === 'headers' && rest.length > 3) where += ` header ${rest[3]}`
    context = 'response'
  }
  if (schemaAt >= 0) {
    const field = fieldPath(rest.slice(schemaAt + 1))
    if (field) where += ` ${field}`
  } else if (rest[0] !== 'parameters') {
    context = null // not inside a schema: no value constraint to judge
  }
  return { operation, where, schemaAt: schemaAt >= 0 ? 3 + schemaAt : -1, context }
}

// ---- the one classification rule for value constraints -------------------------------------

function numberOrUndefined (value) {
  return typeof value === 'number' ? value : undefined
}

/**
 * How a change to one schema keyword moves the set of allowed values: 'narrows', 'widens',
 * 'both', or null when the keyword is not a value constraint (the engine's verdict stands).
 */
function direction (keyword, diff) {
  const { action } = diff
  const was = diff.before
  const now = diff.after
  if (keyword === 'nullable') {
    const before = action === 'add' ? false : Boolean(was)
    const after = action === 'remove' ? false : Boolean(now)
    return before === after ? null : (after ? 'widens' : 'narrows')
  }
  if (keyword === 'type') return 'both'
  if (keyword === 'enum') {
    // An item of the enum list was added/removed, or the whole list was added/removed.
    if (diff.itemOfEnum) return action === 'add' ? 'widens' : action === 'remove' ? 'narrows' : 'both'
    return action === 'add' ? 'narrows' : action === 'remove' ? 'widens' : 'both'
  }
  if (keyword === 'additionalProperties') {
    if (action === 'add' && now === false) return 'narrows'
    if (action === 'remove' && was === false) return 'widens'
    if (action === 'replace' && typeof was === 'boolean' && typeof now === 'boolean') return now ? 'widens' : 'narrows'
    return null
  }
  if (keyword === 'required') return null // the engine knows requests from responses here
  if (UPPER_BOUNDS.has(keyword) || LOWER_BOUNDS.has(keyword)) {
    if (action === 'add') return 'narrows'
    if (action === 'remove') return 'widens'
    const [b, a] = [numberOrUndefined(was), numberOrUndefined(now)]
    if (b === undefined || a === undefined) return 'both'
    if (a === b) return null
    return UPPER_BOUNDS.has(keyword) === (a < b) ? 'narrows' : 'widens'
  }
  if (RESTRICTIONS.has(keyword)) {
    if (keyword.startsWith('exclusive') && typeof (now ?? was) === 'boolean') {
      const before = action === 'add' ? false : Boolean(was)
      const after = action === 'remove' ? false : Boolean(now)
      return before === after ? null : (after ? 'narrows' : 'widens')
    }
    return action === 'add' ? 'narrows' : action === 'remove' ? 'widens' : 'both'
  }
  return null
}

function constraintClass (diff, located) {
  if (located.schemaAt < 0 || !located.context) return null
  const inSchema = diff.path.slice(located.schemaAt + 1)
  let keyword = inSchema[inSchema.length - 1]
  if (inSchema.length >= 2 && inSchema[inSchema.length - 2] === 'enum' && typeof keyword === 'number') {
    keyword = 'enum'
    diff = { ...diff, itemOfEnum: true }
  }
  // A keyword named like a property ("properties", "type", "type") is a property, not a keyword.
  if (inSchema.length >= 2 && inSchema[inSchema.length - 2] === 'properties') return null
  const moves = direction(keyword, diff)
  if (moves === null) return null
  const harms = located.context === 'request' ? 'narrows' : 'widens'
  return { keyword, breaking: moves === 'both' || moves === harms, moves }
}

function show (value) {
  return typeof value === 'string' ? `'${value}'` : JSON.stringify(value)
}

const EFFECTS = {
  request: { narrows: 'the server accepts fewer values', widens: 'the server accepts more values' },
  response: { narrows: 'the server sends fewer values', widens: 'the server may send more values' }
}

function constraintText ({ keyword, moves }, diff, context) {
  const effect = moves === 'both' ? 'the allowed values change' : EFFECTS[context][moves]
  if (diff.path.length && diff.path[diff.path.length - 2] === 'enum') {
    const value = diff.action === 'add' ? diff.after : diff.before
    return `enum value ${show(value)} ${diff.action === 'add' ? 'added' : diff.action === 'remove' ? 'removed' : 'replaced'}: ${effect}`
  }
  const change = diff.action === 'add'
    ? `added (${show(diff.after)})`
    : diff.action === 'remove' ? `removed (was ${show(diff.before)})` : `changed ${show(diff.before)} → ${show(diff.after)}`
  return `${keyword} ${change}: ${effect}`
}

// ---- the comparison ---------------------------------------------------------------------------

const VERBS = { add: 'added', remove: 'removed', replace: 'changed', rename: 'renamed' }

function values (diff) {
  const scalar = value => value === null || typeof value !== 'object'
  if (diff.action === 'replace' && scalar(diff.before) && scalar(diff.after)) return ` (${show(diff.before)} → ${show(diff.after)})`
  if (diff.action === 'add' && scalar(diff.after)) return ` (${show(diff.after)})`
  if (diff.action === 'remove' && scalar(diff.before)) return ` (was ${show(diff.before)})`
  return ''
}

/** One line in words for a diff under `paths`, e.g. "GET /sessions: query parameter `limit`: ...". */
function describe (diff, located, before, after) {
  const rest = diff.path.slice(3)
  const verb = VERBS[diff.action] ?? diff.action
  const where = located.where
  let text
  if (rest.length === 0) {
    text = `operation ${verb}`
  } else if (located.schemaAt >= 0) {
    const inSchema = diff.path.slice(located.schemaAt + 1)
    const [parent, last] = [inSchema[inSchema.length - 2], inSchema[inSchema.length - 1]]
    if (inSchema.length === 0) {
      text = `${where}: schema ${verb}`
    } else if (parent === 'properties') {
      text = `${where}: property ${verb}`
    } else if (parent === 'required' && typeof last === 'number') {
      const name = diff.action === 'add' ? diff.after : diff.before
      text = diff.action === 'replace'
        ? `${where}: required property ${show(diff.before)} → ${show(diff.after)}`
        : `${where}: property ${show(name)} ${diff.action === 'add' ? 'made required' : 'no longer required'}`
    } else {
      text = `${where}: ${last} ${verb}${values(diff)}`
    }
  } else if (rest[0] === 'parameters' && rest.length === 2) {
    const parameter = deref(diff.action === 'add' ? after : before, diff.action === 'add' ? diff.after : diff.before) || {}
    text = `${where} ${verb}${parameter.required ? ' (required)' : ''}`
  } else if (rest[0] === 'responses' && (rest.length === 2 || (rest[2] === 'headers' && rest.length === 4))) {
    text = `${where} ${verb}`
  } else {
    text = `${where ? `${where}: ` : ''}${rest.slice(where ? (rest[0] === 'parameters' || rest[0] === 'responses' ? 2 : 1) : 0).join('.')} ${verb}${values(diff)}`
  }
  return `${located.operation}: ${text}`
}

export function breakingChanges (before, after) {
  const { diffs } = apiCompare(before, after)
  const found = []
  const seen = new Set()
  for (const diff of diffs) {
    const [top] = diff.path
    let breaking = diff.type === 'breaking'
    let text
    if (top === 'paths' && diff.path.length >= 3) {
      const located = locate(diff, before, after)
      const constraint = constraintClass(diff, located)
      if (constraint) {
        breaking = constraint.breaking
        text = `${located.operation}: ${located.where}: ${constraintText(constraint, diff, located.context)}`
      } else {
        text = describe(diff, located, before, after)
      }
    } else if (top === 'components' && diff.path[1] !== 'securitySchemes') {
      continue // judged where it is used: api-smart-diff resolves every $ref into `paths`
    } else {
      text = `${diff.path.join('.')} ${VERBS[diff.action] ?? diff.action}${values(diff)}`
    }
    if (breaking && !seen.has(text)) {
      seen.add(text)
      found.push(text)
    }
  }
  return found
}

function major (version) {
  const match = /^v?(\d+)\./.exec(String(version ?? ''))
  return match ? Number(match[1]) : NaN
}

function acceptedFor (file, version) {
  if (!fs.existsSync(file)) return new Map()
  const entries = (load(fs.readFileSync(file, 'utf8'), file) || {})[String(version)] || []
  const accepted = new Map()
  for (const entry of entries) {
    if (!entry || typeof entry.change !== 'string' || typeof entry.reason !== 'string' || !entry.reason.trim()) {
      usage(`${file}: every entry under ${version} needs a 'change' and a 'reason'`)
    }
    accepted.set(entry.change, entry.reason)
  }
  return accepted
}

function main () {
  const options = parseArgs(process.argv.slice(2))
  let before, after, baseName
  if (options.before) {
    before = load(fs.readFileSync(options.before, 'utf8'), options.before)
    after = load(fs.readFileSync(options.after, 'utf8'), options.after)
    baseName = options.before
  } else {
    after = load(fs.readFileSync(options.spec, 'utf8'), options.spec)
    before = specAtRef(options.spec, options.ref)
    baseName = options.ref
    if (before === null) {
      console.log(`No ${path.relative(process.cwd(), options.spec)} at ${options.ref}: nothing to compare.`)
      return 0
    }
  }
  const [was, now] = [before?.info?.version, after?.info?.version]
  const changes = breakingChanges(before, after)
  const versionNote = `info.version ${was} → ${now}`
  if (changes.length === 0) {
    console.log(`No breaking changes since ${baseName} (${versionNote}).`)
    return 0
  }
  const majorBump = major(now) > major(was)
  const accepted = was !== now ? acceptedFor(options.accepted, now) : new Map()
  const refused = changes.filter(change => !majorBump && !accepted.has(change))
  console.log(`${changes.length} breaking change${changes.length === 1 ? '' : 's'} since ${baseName} (${versionNote}):`)
  for (const change of changes) {
    const reason = majorBump ? 'accepted by the major version bump' : accepted.get(change)
    console.log(reason ? `  accepted  ${change}\n            (${reason})` : `  BREAKING  ${change}`)
  }
  if (refused.length === 0) {
    console.log('Every breaking change is accepted.')
    return 0
  }
  console.log(
    `\n${refused.length} breaking change${refused.length === 1 ? '' : 's'} would break existing clients. ` +
    'If that is deliberate, bump the major part of info.version, or list each change with a reason in ' +
    `${path.relative(ROOT, DEFAULT_ACCEPTED)} under the new info.version (docs/reviewers/index.md).`
  )
  return 1
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main()
}
