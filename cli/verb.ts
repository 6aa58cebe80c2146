/**
 * How a verb is declared, and how its command line becomes the values it runs with.
 *
 * A verb file (cli/<verb>.ts) exports `verb: Verb`: its flags, its arguments, its help,
 * and `run`. Parsing is commander's (help, errors with suggestions, `--flag=value`,
 * `--`); this module adds what commander does not: each value's source in the order
 * flag > environment variable > config file ([verb] section, then the top), one-line
 * errors that name the verb once, the synopsis README shows, and shell completion.
 */
import { Command, CommanderError, Help, InvalidArgumentError, Option } from 'commander';
import { UsageError } from '../formats/errors.js';

/** One flag of a verb. */
export interface Flag {
  /** The long name without dashes: `repo` gives `--repo`. */
  name: string;
  /** The value's placeholder (`REPO`); none for a switch. */
  value?: string;
  /** One letter: `q` gives `-q`. */
  short?: string;
  /** Repeatable: the values collect in a list. */
  many?: boolean;
  /** Must be given, as a flag, by its environment variable or in the config file. */
  required?: boolean;
  /** The environment variable that stands in for the flag. */
  env?: string;
  /** The only values it takes (also what completion offers). */
  choices?: readonly string[];
  /** A path: `~/` at the start of a config file value is the home directory. */
  path?: boolean;
  /** false: the config file never sets it. */
  config?: boolean;
  /** Listed under "Options" but left out of the synopsis (the flags every verb has). */
  common?: boolean;
  /** One line for the help. */
  help: string;
}

/** A verb: what `iebs NAME ...` runs. */
export interface Verb {
  /** One line for `iebs help`. */
  summary: string;
  /** Positional arguments as the synopsis shows them: `SOURCE...`, `[SNAPSHOT]`, `[VOLUME...]`. */
  args?: string;
  /** Prose shown under the synopsis in `iebs VERB --help`. */
  about: string;
  flags: Flag[];
  /** Runs the verb; returns the exit code (cli/errors.ts EXIT). */
  run(a: Args): Promise<number>;
}

/** A value a verb was given. */
export type Value = string | boolean | string[] | undefined;

/** Where a value came from. */
export type Source = 'flag' | 'env' | 'config' | undefined;

/** The arguments a verb runs with. */
export class Args {
  constructor(
    readonly verb: string,
    private readonly values: Map<string, Value>,
    private readonly sources: Map<string, Source>,
    readonly positionals: string[],
    private readonly flags: Flag[],
    /** Aborted on SIGINT or SIGTERM (cli/main.ts): a verb that can stop cleanly passes it on. */
    readonly signal: AbortSignal,
  ) {}

  /** A value flag's value, if given. */
  str(name: string): string | undefined { return this.values.get(name) as string | undefined; }
  /** Whether a switch was given. */
  bool(name: string): boolean { return this.values.get(name) === true; }
  /** A repeatable flag's values. */
  list(name: string): string[] { return (this.values.get(name) as string[] | undefined) ?? []; }
  /** Where a flag's value came from. */
  source(name: string): Source { return this.sources.get(name); }
  /** --quiet: no progress, notes or closing summary; what the verb was asked to list is still printed. */
  get quiet(): boolean { return this.bool('quiet'); }

  /** A value that must be there; the error says every way to give it. */
  need(name: string, what?: string): string {
    const v = this.str(name);
    if (v !== undefined && v !== '') return v;
    const f = this.flags.find((x) => x.name === name);
    throw missing(f ? `--${name} ${what ?? f.value ?? ''}`.trim() : what ?? name, f?.env);
  }
}

/** The error of a required value that is not there (the CLI prefixes the verb). */
export function missing(what: string, env?: string): UsageError {
  const name = /^--([a-z-]+)/.exec(what)?.[1];
  return new UsageError('missing-argument', `${what} is required${env ? ` (or set ${env}${name ? `, or ${name} = ... in the config file` : ''})` : ''}`);
}

/** The synopsis of a verb as `iebs VERB --help` and README's table show it. */
export function synopsis(name: string, v: Verb): string {
  const parts = [`iebs ${name}`];
  if (v.args) parts.push(v.args);
  for (const f of v.flags) {
    if (f.common) continue;
    const one = `--${f.name}${f.value ? ' ' + f.value : ''}`;
    parts.push(f.required ? one : `[${one}]${f.many ? '...' : ''}`);
  }
  return parts.join(' ');
}

/** Commander's help, with our synopsis and flags written as README writes them. */
class VerbHelp extends Help {
  override commandUsage(cmd: Command): string {
    return `iebs ${cmd.name()} ${cmd.usage()}`;
  }

  override optionTerm(option: Option): string {
    return option.flags.replace(/ <([^>]+)>/, ' $1');
  }
}

/** A verb's commander command. */
function command(name: string, v: Verb, out: (s: string) => void): Command {
  const c = new Command(name)
    .usage(synopsis(name, v).replace(/^iebs \S+ ?/, ''))
    .description(v.about)
    .helpOption('-h, --help', 'show this help')
    .exitOverride()
    .configureOutput({ writeOut: out, writeErr: () => {}, outputError: () => {} })
    .showSuggestionAfterError(true);
  c.createHelp = () => Object.assign(new VerbHelp(), c.configureHelp());
  for (const a of (v.args ?? '').split(' ').filter(Boolean)) {
    const opt = a.startsWith('[');
    const base = a.replace(/^\[|\]$/g, '');
    c.argument(opt ? `[${base}]` : `<${base}>`);
  }
  for (const f of v.flags) {
    const o = new Option(`${f.short ? `-${f.short}, ` : ''}--${f.name}${f.value ? ` <${f.value}>` : ''}`, f.help);
    if (f.env) o.env(f.env);
    if (f.choices) o.choices(f.choices);
    if (f.many) o.argParser((value: string, previous: unknown) => (Array.isArray(previous) ? [...previous, value] : [value]));
    else if (f.value && !f.choices) {
      o.argParser((value: string, previous: unknown) => {
        if (previous !== undefined && c.getOptionValueSource(o.attributeName()) === 'cli') throw new InvalidArgumentError('given twice');
        return value;
      });
    }
    c.addOption(o);
  }
  return c;
}

/** What commander's error message says, in our words and on one line. */
function commanderMessage(e: CommanderError): string {
  const choice = /^error: option '(-[^ ']+)[^']*' argument '(.*)' is invalid\. Allowed choices are (.*)\.$/s.exec(e.message);
  if (choice) return `${choice[1]} ${JSON.stringify(choice[2])}: not one of ${choice[3]}`;
  return e.message.replace(/^error: /, '').replace(/\n\(Did you mean (.*)\?\)/, ' (did you mean $1?)').replace(/\n/g, ' ');
}

/**
 * Parses `argv` for verb `name`. Returns null when help was asked for (and printed);
 * throws a UsageError (without the verb: the caller names it) for bad arguments.
 */
/** Where values missing from the command line and the environment are looked up (cli/config.ts). */
export interface Defaults {
  /** Refuses settings of a [verb] section that the verb does not take. */
  check(verb: string, flags: Flag[]): void;
  /** The value the config file gives flag `f` of `verb`. */
  value(verb: string, f: Flag): Value;
}

export function parseVerb(name: string, v: Verb, argv: string[], signal: AbortSignal, cfg: Defaults): Args | null {
  let helped = false;
  const c = command(name, v, (s) => { helped = true; process.stdout.write(s); });
  try {
    c.parse(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (helped || e.code === 'commander.helpDisplayed') return null;
      throw new UsageError('bad-flag', `${commanderMessage(e)}; iebs help ${name} lists the options`);
    }
    throw e;
  }
  const opts = c.opts();
  const values = new Map<string, Value>();
  const sources = new Map<string, Source>();
  cfg.check(name, v.flags);
  for (const f of v.flags) {
    const attr = new Option(`--${f.name}`).attributeName();
    // Only what the command line or the environment gave (commander also fills in
    // defaults: a --no-X flag is its negation, X, with true by default).
    const from = c.getOptionValueSource(attr);
    const given = from === 'cli' || from === 'env';
    let value: Value = !given ? undefined : f.name.startsWith('no-') ? opts[attr] === false : (opts[attr] as Value);
    let source: Source = !given ? undefined : from === 'env' ? 'env' : 'flag';
    if (value === undefined) {
      const fromConfig = cfg.value(name, f);
      if (fromConfig !== undefined) { value = fromConfig; source = 'config'; }
    }
    values.set(f.name, value);
    sources.set(f.name, source);
  }
  const args = new Args(name, values, sources, c.args, v.flags, signal);
  for (const f of v.flags) if (f.required) args.need(f.name);
  return args;
}

/** The general help: every verb's synopsis and summary. */
export function generalHelp(verbs: [string, Verb][]): string {
  return `iebs: encrypted, incremental, block-level backups

usage: iebs COMMAND [options]     iebs help COMMAND, or iebs COMMAND --help, for its options

${verbs.map(([n, v]) => `  ${n.padEnd(10)} ${v.summary}`).join('\n')}
  ${'completion'.padEnd(10)} prints a completion script: iebs completion bash|zsh
  ${'help'.padEnd(10)} iebs help COMMAND shows a command's options

Settings: flags, else IEBS_REPO, IEBS_KEY, IEBS_PASSPHRASE_FILE (and IEBS_PASSPHRASE), else
the config file ${'$'}IEBS_CONFIG_DIR/config (default ~/.config/iebs/config); see README.
Exit codes: 0 done, 1 error, 2 bad arguments, 3 done with problems (files not backed
up or not restored), 11 repository locked, 130/143 interrupted (SIGINT/SIGTERM).
`;
}

/** Every flag a verb takes, as completion offers them. */
function flagWords(v: Verb): string[] {
  const out: string[] = [];
  for (const f of v.flags) { out.push(`--${f.name}`); if (f.short) out.push(`-${f.short}`); }
  out.push('--help');
  return out;
}

/** The bash completion script. */
export function bashCompletion(verbs: [string, Verb][]): string {
  const names = verbs.map(([n]) => n).concat(['help', 'completion']).join(' ');
  const cases = verbs.map(([n, v]) => {
    const values = v.flags.filter((f) => f.value).map((f) => `--${f.name}`);
    const choices = v.flags.filter((f) => f.choices).map((f) => `      --${f.name}) COMPREPLY=($(compgen -W "${f.choices!.join(' ')}" -- "$cur")); return;;`);
    return `    ${n})\n      flags="${flagWords(v).join(' ')}"\n      values=" ${values.join(' ')} "\n      case "$prev" in\n${choices.join('\n')}${choices.length ? '\n' : ''}      esac;;`;
  });
  return `# bash completion for iebs: eval "$(iebs completion bash)", or save it as
# /etc/bash_completion.d/iebs or ~/.local/share/bash-completion/completions/iebs
_iebs() {
  local cur prev verb flags values
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "${names}" -- "$cur"))
    return
  fi
  verb="\${COMP_WORDS[1]}"
  case "$verb" in
    help) [ "$COMP_CWORD" -eq 2 ] && COMPREPLY=($(compgen -W "${verbs.map(([n]) => n).join(' ')}" -- "$cur")); return;;
    completion) [ "$COMP_CWORD" -eq 2 ] && COMPREPLY=($(compgen -W "bash zsh" -- "$cur")); return;;
${cases.join('\n')}
    *) return;;
  esac
  if [[ "$values" == *" $prev "* ]]; then
    COMPREPLY=($(compgen -f -- "$cur"))
    return
  fi
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    return
  fi
  COMPREPLY=($(compgen -f -- "$cur"))
}
complete -o filenames -o bashdefault -F _iebs iebs
`;
}

/** The zsh completion script. */
export function zshCompletion(verbs: [string, Verb][]): string {
  const q = (s: string) => s.replace(/'/g, `'\\''`).replace(/[[\]:]/g, '\\$&');
  const spec = (f: Flag): string => {
    const what = f.choices ? `:${f.value}:(${f.choices.join(' ')})` : f.value ? `:${f.value}:_files` : '';
    const names = f.short ? `(-${f.short} --${f.name})'{-${f.short},--${f.name}}'` : `--${f.name}`;
    return `'${f.many ? '*' : ''}${names}[${q(f.help)}]${what}'`;
  };
  const cases = verbs.map(([n, v]) => `    ${n}) _arguments -s ${v.flags.map(spec).join(' ')} '*:file:_files' ;;`);
  return `#compdef iebs
# zsh completion for iebs: save as _iebs in a directory of $fpath (then compinit), or
# source <(iebs completion zsh) after compinit
_iebs() {
  local -a verbs
  verbs=(${verbs.map(([n, v]) => `'${n}:${q(v.summary)}'`).join(' ')} 'help:show the help of a command' 'completion:print a completion script')
  if (( CURRENT == 2 )); then
    _describe 'command' verbs
    return
  fi
  local verb=\${words[2]}
  shift words
  (( CURRENT-- ))
  case $verb in
    help) _describe 'command' verbs ;;
    completion) _values 'shell' bash zsh ;;
${cases.join('\n')}
  esac
}
if [ "$funcstack[1]" = "_iebs" ]; then _iebs "$@"; else compdef _iebs iebs; fi
`;
}
