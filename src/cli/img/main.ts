// `qzoned img`: qemu-img's subcommands and flags. This file only declares them (commander needs the
// flags for parsing and --help); each action loads its own module, so a run pays for the engine
// parts its subcommand uses and nothing else.
import { Command } from 'commander';
import { collect, type CliContext } from '../../shared/cli-context.js';
import { usageError } from '../../shared/size.js';

const FORCE_SHARE = 'read an image another process has open read-write (as of its last flush; what it shows may be stale)';

/** Arguments as given, after the resize size has been taken off the end (see prepareImgArgv). */
export interface ImgArgv {
  argv: string[];
  /** qemu-img resize's last argument, which may start with '-' (a shrink by). */
  resizeSize?: string;
}

/**
 * qemu-img resize takes its size from the last argument before parsing options, so that "-1G" is
 * a size and not an option; `argv` starts at the word after `img`.
 */
export function prepareImgArgv(argv: readonly string[]): ImgArgv {
  if (argv[0] !== 'resize' || argv.includes('-h') || argv.includes('--help')) return { argv: [...argv] };
  if (argv.length < 3) throw usageError('Not enough arguments');
  const rest = argv.slice(0, -1);
  // "img resize FILE -- -1G": the separator belonged to the size.
  if (rest[rest.length - 1] === '--') rest.pop();
  return { argv: rest, resizeSize: argv[argv.length - 1]! };
}

export function imgCommand(ctx: CliContext, prepared: ImgArgv = { argv: [] }): Command {
  const img = new Command('img');

  img.command('create')
    .summary('create an image (qcow2, zoned or plain, or raw)')
    .description('create an image, as qemu-img create; -o takes comma-separated key=value options (cluster_size, lazy_refcounts, '
      + 'preallocation, zone.mode, zone.size, ...; -o help lists them, and says which of qemu-img\'s qzoned does not support and why)')
    .usage('[-q] [-f qcow2|raw] [-o OPTS]... FILE [SIZE]')
    .option('-f, --format <fmt>', 'image format: qcow2 (default) or raw', 'qcow2')
    .option('-o, --options <opts>', 'key=value[,key=value...]; repeatable; - and _ are interchangeable in keys; help lists them', collect, [] as string[])
    .option('-q, --quiet', 'do not print the Formatting line')
    .option('-b, --backing <file>', 'qemu-img\'s backing file: refused (qzoned images have no backing file)')
    .option('-F, --backing-format <fmt>', 'qemu-img\'s backing file format: refused likewise')
    .option('-u, --unsafe', 'qemu-img\'s unchecked backing file: refused likewise')
    .argument('[file]', 'image file to create')
    .argument('[size]', 'virtual size: 512, 64k, 64M, 1G, 16T, 0x...')
    .action(async (file: string | undefined, size: string | undefined, opts: { format: string; options: string[]; quiet?: boolean; backing?: string; backingFormat?: string; unsafe?: boolean }) => {
      const { runCreate } = await import('./create.js');
      await runCreate(ctx, file, size, {
        format: opts.format, options: opts.options, quiet: opts.quiet, backingFile: opts.backing, backingFormat: opts.backingFormat, unsafe: opts.unsafe,
      });
    });

  img.command('info')
    .summary('show what an image is, its zones and backing file')
    .description('show what an image is, as qemu-img info does; a zoned image adds its zone section, and an image with a '
      + 'backing file shows it (qzoned reads through none, so other tools refuse such an image)')
    .usage('[-f FMT] [--output=human|json] [--backing-chain] [-U] FILE')
    .option('-f, --format <fmt>', 'qcow2 or raw (probed when absent)')
    .option('--output <format>', 'human (default) or json')
    .option('--backing-chain', 'also show the backing file, its own backing file, and so on')
    .option('-U, --force-share', FORCE_SHARE)
    .argument('<file>')
    .action(async (file: string, opts: { format?: string; output?: string; backingChain?: boolean; forceShare?: boolean }) => {
      const { runInfo } = await import('./info.js');
      await runInfo(ctx, file, opts);
    });

  img.command('check')
    .summary("check an image's metadata and zones; -r repairs")
    .description('check refcounts, L1/L2 tables and zone metadata; exit 0 clean, 1 check failed, 2 corruptions, 3 leaks only. '
      + 'An image another process holds is refused unless -U, as qemu-img does')
    .usage('[-q] [-f qcow2] [--output=human|json] [-r leaks|all] [-U] FILE')
    .option('-f, --format <fmt>', 'qcow2 (probed when absent)')
    .option('--output <format>', 'human (default) or json')
    .option('-r, --repair <what>', 'repair leaks, or all inconsistencies')
    .option('-q, --quiet', 'print nothing')
    .option('-U, --force-share', FORCE_SHARE)
    .argument('<file>')
    .action(async (file: string, opts: { format?: string; output?: string; repair?: string; quiet?: boolean; forceShare?: boolean }) => {
      const { runCheck } = await import('./check.js');
      await runCheck(ctx, file, opts);
    });

  img.command('convert')
    .summary('copy an image into a new one; zones kept, made or dropped')
    .description('copy an image into a new one, raw and qcow2 both ways; zero blocks are not written. Zones are kept: a zoned '
      + 'source gives a zoned qcow2 image with its geometry, write pointers and conditions (limits may change with -o '
      + 'zone.max_open_zones=...); -o zone.* lays a raw or plain source (or a zoned one into another geometry) into zones, '
      + 'each write pointer where its data ends, refusing data past a zone\'s capacity; -o zone.mode=non-zoned or -O raw '
      + 'drops them. A line says what happened to the zones. '
      + '-O zloop writes a zoned image as a Linux zloop directory (DST ends in the device id, e.g. /var/local/zloop/0) and prints '
      + 'the line for /dev/zloop-control; -f zloop reads such a directory back into a zoned qcow2 image (docs/zloop.md)')
    .usage('[-q] [-p] [-c] [-n] [-U] [-f FMT] -O raw|qcow2|zloop [-o OPTS]... [-S SPARSE] [--block-size N] [--zloop-options OPTS] SRC DST')
    .option('-f, --format <fmt>', 'source format: qcow2, raw or zloop (qcow2/raw probed when absent; a directory is zloop)')
    .option('-O, --output-format <fmt>', 'destination format: raw (default, as qemu-img), qcow2 or zloop', 'raw')
    .option('-o, --options <opts>', 'the new image\'s options, as img create\'s (the size is the source\'s); -o help lists them', collect, [] as string[])
    .option('-c, --compress', 'write compressed clusters (qcow2, plain images)')
    .option('-S, --sparse-size <size>', 'zero runs this long are left unwritten (default 4k; 0 writes every byte)')
    .option('-n, --no-create', 'write into DST as it exists (at least as large as SRC; not a zoned image) instead of creating it')
    .option('-p, --progress', 'show progress')
    .option('-q, --quiet', 'print nothing')
    .option('-U, --force-share', FORCE_SHARE)
    .option('-B, --backing <file>', 'qemu-img\'s backing file for the new image: refused (qzoned images have no backing file)')
    .option('--block-size <size>', '-O zloop: logical block size of the file system that will hold DST (default 4096); '
      + 'sequential zones\' write pointers must be multiples of it')
    .option('--zloop-options <opts>', '-f zloop: the options the directory was added with (capacity_mb=..,zone_size_mb=..,'
      + 'zone_capacity_mb=..,conv_zones=..; zloop\'s defaults for what is left out), for a directory without a qzoned geometry file')
    .argument('[src]')
    .argument('[dst]')
    .action(async (src: string | undefined, dst: string | undefined, opts: Record<string, unknown>) => {
      const { runConvert } = await import('./convert.js');
      await runConvert(ctx, src, dst, {
        format: opts.format as string | undefined, outputFormat: opts.outputFormat as string, options: opts.options as string[],
        compress: opts.compress === true, sparseSize: opts.sparseSize as string | undefined, skipCreate: opts.create === false,
        progress: opts.progress === true, quiet: opts.quiet === true, forceShare: opts.forceShare === true,
        backingFile: opts.backing as string | undefined, blockSize: opts.blockSize as string | undefined,
        zloopOptions: opts.zloopOptions as string | undefined,
      });
    });

  img.command('compare')
    .summary("compare two images' data, then their zones")
    .description('compare the contents of two images, as qemu-img compare: exit 0 identical, 1 different, 2 an image could not be '
      + 'opened. When the data is the same, zoned images also compare their zones (geometry, each write pointer and condition), '
      + 'and a zoned image never equals a plain one')
    .usage('[-q] [-p] [-s] [-U] [-f FMT] [-F FMT] FILE1 FILE2')
    .option('-f, --format <fmt>', 'format of FILE1 (probed when absent)')
    .option('-F, --second-format <fmt>', 'format of FILE2 (probed when absent)')
    .option('-s, --strict', 'strict mode: fail on different image size or block status')
    .option('-p, --progress', 'show progress')
    .option('-q, --quiet', 'print nothing; the exit status says')
    .option('-U, --force-share', FORCE_SHARE)
    .argument('<file1>')
    .argument('<file2>')
    .action(async (file1: string, file2: string, opts: { format?: string; secondFormat?: string; strict?: boolean; progress?: boolean; quiet?: boolean; forceShare?: boolean }) => {
      const { runCompare } = await import('./compare.js');
      await runCompare(ctx, file1, file2, opts);
    });

  img.command('map')
    .summary('show how the data is stored, zone by zone on a zoned image')
    .description('show how the image\'s data is stored, as qemu-img map (human or --output=json). On a zoned image every entry '
      + 'stays inside one zone and carries it (start, type, condition, write pointer), and the human table is followed by one '
      + 'line per zone')
    .usage('[-f FMT] [--output=human|json] [--start-offset=OFFSET] [--max-length=LEN] [-U] FILE')
    .option('-f, --format <fmt>', 'qcow2 or raw (probed when absent)')
    .option('--output <format>', 'human (default) or json')
    .option('-s, --start-offset <offset>', 'start at this guest offset')
    .option('-l, --max-length <length>', 'map at most this many bytes')
    .option('-U, --force-share', FORCE_SHARE)
    .argument('<file>')
    .action(async (file: string, opts: { format?: string; output?: string; startOffset?: string; maxLength?: string; forceShare?: boolean }) => {
      const { runMap } = await import('./map.js');
      await runMap(ctx, file, opts);
    });

  img.command('resize')
    .summary('change the virtual size (by whole zones on a zoned image)')
    .description('change the virtual size, as qemu-img resize: [+|-]SIZE is the last argument, and shrinking needs --shrink. '
      + 'A zoned image grows and shrinks by whole zones only: new zones are empty sequential zones, dropped zones lose their data')
    .usage('[-q] [-f FMT] [--preallocation=off] [--shrink] FILE [+|-]SIZE')
    .option('-f, --format <fmt>', 'qcow2 or raw (probed when absent)')
    .option('--preallocation <mode>', 'off (the only mode qzoned grows images with)')
    .option('--shrink', 'allow shrinking (data beyond the new end is lost)')
    .option('-q, --quiet', 'do not print "Image resized."')
    .argument('<file>')
    .action(async (file: string, opts: { format?: string; preallocation?: string; shrink?: boolean; quiet?: boolean }) => {
      if (prepared.resizeSize === undefined) throw usageError('Expecting image file name and size');
      const { runResize } = await import('./resize.js');
      await runResize(ctx, file, prepared.resizeSize, opts);
    });

  img.command('measure')
    .summary('how large a new image would be')
    .description('how large a new image would be, as qemu-img measure: of SIZE bytes, or holding FILE\'s data. A zoned target (a '
      + 'zoned FILE, or -o zone.*) counts its zone metadata array in both sizes')
    .usage('[--output=human|json] [-O raw|qcow2] [-o OPTS]... [--size N | [-U] [-f FMT] FILE]')
    .option('--output <format>', 'human (default) or json')
    .option('-O, --output-format <fmt>', 'format of the new image: raw (default) or qcow2')
    .option('-o, --options <opts>', 'the new image\'s options, as img create\'s; -o help lists them', collect, [] as string[])
    .option('--size <size>', 'measure an empty image of this size')
    .option('-f, --format <fmt>', 'format of FILE (probed when absent)')
    .option('-l, --snapshot <param>', 'qemu-img\'s internal snapshot to measure: refused (qzoned images have none)')
    .option('-U, --force-share', FORCE_SHARE)
    .argument('[file]')
    .action(async (file: string | undefined, opts: { output?: string; outputFormat?: string; options: string[]; size?: string; format?: string; snapshot?: string; forceShare?: boolean }) => {
      const { runMeasure } = await import('./measure.js');
      await runMeasure(ctx, file, opts);
    });

  img.command('amend')
    .summary('change options of an image at rest, zone limits included')
    .description('change options of an image at rest, as qemu-img amend: lazy_refcounts, size, and a zoned image\'s limits '
      + '(zone.max_open_zones, zone.max_active_zones, zone.max_append_bytes; max-active may not go below the zones now '
      + 'partly written). -o help lists them; options fixed at creation are refused as qemu-img refuses them')
    .usage('[-p] [-q] [-f qcow2] -o OPTS... FILE')
    .option('-f, --format <fmt>', 'qcow2 (probed when absent)')
    .option('-o, --options <opts>', 'key=value[,key=value...]; repeatable', collect, [] as string[])
    .option('-p, --progress', 'show progress')
    .option('-q, --quiet', 'print nothing')
    .argument('[file]')
    .action(async (file: string | undefined, opts: { format?: string; options: string[]; progress?: boolean; quiet?: boolean }) => {
      const { runAmend } = await import('./amend.js');
      await runAmend(ctx, file, opts);
    });

  img.command('dd')
    .summary('copy blocks from one image into a new one')
    .description('copy blocks from one image into a new one, as qemu-img dd (its arithmetic included: count= ends the input '
      + 'count*bs bytes from its start, skip= or not). A zoned input gives a plain output')
    .usage('[-U] [-f FMT] [-O raw|qcow2] [bs=BLOCK_SIZE] [count=BLOCKS] [skip=BLOCKS] if=INPUT of=OUTPUT')
    .option('-f, --format <fmt>', 'format of INPUT (probed when absent)')
    .option('-O, --output-format <fmt>', 'format of OUTPUT: raw (default) or qcow2')
    .option('-U, --force-share', FORCE_SHARE)
    .argument('<operands...>', 'bs=, count=, skip= (sizes; suffixes and 0x allowed), if=, of=')
    .action(async (operands: string[], opts: { format?: string; outputFormat?: string; forceShare?: boolean }) => {
      const { runDd } = await import('./dd.js');
      await runDd(ctx, operands, opts);
    });

  img.command('bench')
    .summary('time reads, writes or zone appends')
    .description('time COUNT reads (or writes with -w) as qemu-img bench does; requests go out in batches of DEPTH, '
      + 'but the engine runs them one after another, so DEPTH sets how many are outstanding, not how many run at once')
    .usage('[-w] [-c COUNT] [-d DEPTH] [-s SIZE] [-S STEP] [-o OFFSET] [-f qcow2] [-t CACHE] [-U] [--pattern N] [--flush-interval N] '
      + '[--no-drain] [--zone-append] FILE')
    .option('-c, --count <n>', 'number of requests (default 75000; decimal, 0x hex or 0 octal)')
    .option('-d, --depth <n>', "qemu-img's queue depth (default 64): accepted and shown; the engine runs requests one after another")
    .option('-f, --format <fmt>', 'qcow2 (the only format bench opens)')
    .option('-s, --size <size>', 'bytes per request (default 4K)')
    .option('-S, --step <size>', 'offset increment between requests (default: the request size)')
    .option('-o, --offset <offset>', 'offset of the first request (default 0)')
    .option('-w, --write', 'write instead of read')
    .option('-t, --cache <mode>', 'writeback (default), writethrough (a flush after every write) or unsafe (flushes skipped); '
      + 'none and directsync (O_DIRECT) are refused: the engine always goes through the page cache')
    .option('-i, --aio <mode>', "qemu-img's AIO engine: refused (qzoned's engine does synchronous I/O)")
    .option('-n, --native', "qemu-img's -i native: refused likewise")
    .option('-U, --force-share', FORCE_SHARE)
    .option('--pattern <n>', 'byte written by -w (default 0; decimal, 0x hex or 0 octal)')
    .option('--flush-interval <n>', 'flush after every N requests')
    .option('--no-drain', 'accepted for qemu-img compatibility: batches complete before each flush anyway')
    .option('--zone-append', 'write by zone append, zone by zone from the zone holding OFFSET (zoned images)')
    .option('-q, --quiet', 'print nothing')
    .argument('<file>')
    .action(async (file: string, opts: Record<string, string | boolean | undefined>) => {
      const { runBench } = await import('./bench.js');
      await runBench(ctx, file, opts);
    });

  return img;
}
