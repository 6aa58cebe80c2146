export const help = 'iebs serve'; export async function main(_argv: string[]): Promise<number> { return 0; }
