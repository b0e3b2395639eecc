// SSRF protection for rest-hook endpoints: http(s) only, and no loopback / private / link-local /
// unspecified address (checked on every name resolution, at subscribe time and again before each
// delivery, so DNS rebinding does not help) unless the host name or address is in the allow-list
// (SUBSCRIPTION_ALLOWED_HOSTS).
import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

const blocked = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  blocked.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const) {
  blocked.addSubnet(net, bits, 'ipv6');
}

export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return blocked.check(address, 'ipv4');
  if (family === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return blocked.check(mapped[1], 'ipv4');
    return blocked.check(address, 'ipv6');
  }
  return true;
}

/** Resolves to undefined when the endpoint may be called, or the reason it may not. */
export async function endpointRefusal(endpoint: string, allowedHosts: string[]): Promise<string | undefined> {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return 'the endpoint is not a valid URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'the endpoint must be http or https';
  if (url.username || url.password) return 'the endpoint must not carry credentials in the URL (use channel.header)';
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (allowedHosts.includes(host)) return undefined;
  let addresses: string[];
  if (isIP(host)) addresses = [host];
  else {
    try {
      addresses = (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
    } catch {
      return `the endpoint host ${host} does not resolve`;
    }
  }
  for (const a of addresses) {
    if (isPrivateAddress(a) && !allowedHosts.includes(a.toLowerCase())) {
      return `the endpoint host ${host} is on a private or loopback network (${a}); SUBSCRIPTION_ALLOWED_HOSTS does not allow it`;
    }
  }
  return undefined;
}
