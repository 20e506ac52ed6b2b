import { nodeOrigin } from './node-address';

describe(nodeOrigin.name, () => {
  it('should use an IPv4 address, also IPv4-mapped, for both ownership and share', () => {
    expect(nodeOrigin('203.0.113.7')).toEqual({ owner: '203.0.113.7', group: '203.0.113.7' });
    expect(nodeOrigin('::ffff:203.0.113.7')).toEqual({
      owner: '203.0.113.7',
      group: '203.0.113.7',
    });
  });

  it('should own by the IPv6 /64 and count the share by the /56, however the address is written', () => {
    const a = nodeOrigin('2001:db8:1:1a0:abcd::3');
    const b = nodeOrigin('2001:0DB8:0001:01A0:0000:0000:0000:0009');
    const sameGroup = nodeOrigin('2001:db8:1:1ff::2');
    const otherGroup = nodeOrigin('2001:db8:1:200::1');

    expect(a).toEqual({ owner: '2001:db8:1:1a0::/64', group: '2001:db8:1:100::/56' });
    expect(b).toEqual(a);
    expect(sameGroup.group).toBe(a.group);
    expect(sameGroup.owner).not.toBe(a.owner);
    expect(otherGroup.group).not.toBe(a.group);
  });

  it('should keep anything that is not an IP address as one origin', () => {
    expect(nodeOrigin('unknown')).toEqual({ owner: 'unknown', group: 'unknown' });
  });
});
