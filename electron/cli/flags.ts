// The parsed flags a command handler gets from cli.ts's parseArgs, and reading a value flag from them.
export type Flags = Record<string, string | true>;

/** A value flag's text, or undefined when not given; a value flag given bare (`--out` alone) is an error. */
export function str(flags: Flags, name: string): string | undefined {
  const v = flags[name];
  if (v === true) throw new Error(`--${name} needs a value`);
  return v;
}
