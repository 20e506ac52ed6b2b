import { addressGroup, addressUnit, UNITS_MEMO_MAX, unitsMemoSize } from './client-address';

describe('client address units', () => {
  it('should hold an IPv4 address (IPv4-mapped IPv6 too) to itself', () => {
    expect(addressUnit('203.0.113.7')).toBe('203.0.113.7');
    expect(addressGroup('203.0.113.7')).toBe('203.0.113.7');
    expect(addressUnit('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(addressGroup('::ffff:203.0.113.7')).toBe('203.0.113.7');
  });

  it('should hold an IPv6 address to its /64, and group it by its /56', () => {
    expect(addressUnit('2001:db8:1:2a3:4:5:6:7')).toBe('2001:db8:1:2a3::/64');
    expect(addressUnit('2001:db8:1:2a3:ffff::1')).toBe('2001:db8:1:2a3::/64');
    expect(addressGroup('2001:db8:1:2a3:4:5:6:7')).toBe('2001:db8:1:200::/56');
    expect(addressGroup('2001:db8:1:2ff::9')).toBe('2001:db8:1:200::/56');
  });

  it('should keep what is not an IP address (a Unix socket, unknown) as it is', () => {
    expect(addressUnit('unknown')).toBe('unknown');
    expect(addressGroup('/run/relay.sock')).toBe('/run/relay.sock');
  });

  it('should remember at most its bound of addresses when a stranger cycles through a /48, and answer the same after', () => {
    let most = 0;
    for (let i = 0; i < 3 * UNITS_MEMO_MAX; i += 1) {
      addressUnit(`2001:db8:7:${(i % 65536).toString(16)}::${(i + 1).toString(16)}`);
      most = Math.max(most, unitsMemoSize());
    }

    expect(most).toBe(UNITS_MEMO_MAX);
    expect(addressUnit('2001:db8:7:1::2')).toBe('2001:db8:7:1::/64');
    expect(addressGroup('2001:db8:7:1ff::2')).toBe('2001:db8:7:100::/56');
  });
});
