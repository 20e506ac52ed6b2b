import { RelayConfig } from '../../src/config/relay-config';
import { unknownVariableWarnings } from '../../src/config/unknown-env';
import { describeIf } from '../helpers/requirements';
import {
  MATRIX,
  envMap,
  helmReady,
  podSpec,
  relayContainer,
  render,
  renderNotes,
} from './chart.helper';

const ready = helmReady();

describeIf(ready)(
  'chart: gateway, operator token, and the variables the chart hands the relay',
  () => {
    it('should mount the gateway key Secret as TOKENPLACE_GATEWAY_KEY_FILE, read-only', () => {
      const { docs } = render({ set: ['gateway.keySecret.existingSecret=relay-gateway-key'] });

      const env = envMap(docs);
      const mount = relayContainer(docs).volumeMounts?.find((m) => m.name === 'gateway-key');
      const volume = podSpec(docs).volumes?.find((v) => v.name === 'gateway-key');

      expect(env.TOKENPLACE_GATEWAY_KEY_FILE?.value).toBe('/etc/tokenplace/gateway-key/key.pem');
      expect(mount).toEqual({
        name: 'gateway-key',
        mountPath: '/etc/tokenplace/gateway-key',
        readOnly: true,
      });
      expect(volume).toMatchObject({
        secret: { secretName: 'relay-gateway-key', defaultMode: 288 },
      });
    });

    it('should take the operator token from a Secret and switch the gateway with gateway.enabled', () => {
      const on = envMap(render({ set: ['operator.existingSecret=relay-operator'] }).docs);
      const off = envMap(render({ set: ['gateway.enabled=false'] }).docs);

      expect(on.TOKEN_PLACE_OPERATOR_TOKEN).toEqual({
        name: 'TOKEN_PLACE_OPERATOR_TOKEN',
        valueFrom: { secretKeyRef: { name: 'relay-operator', key: 'token' } },
      });
      expect(on.TOKENPLACE_GATEWAY_ENABLED?.value).toBe('1');
      expect(off.TOKENPLACE_GATEWAY_ENABLED?.value).toBe('0');
      expect(on.TOKENPLACE_GATEWAY_KEY_FILE).toBeUndefined();
    });

    it('should warn in NOTES when several pods serve the gateway without a shared key', () => {
      const redis = ['state.store=redis', 'state.redis.existingSecret=redis-url', 'replicaCount=2'];

      const unshared = renderNotes({ set: redis });
      const shared = renderNotes({ set: [...redis, 'gateway.keySecret.existingSecret=k'] });
      const single = renderNotes({});

      expect(unshared).toContain('several pods serve the OpenAI-compatible gateway');
      expect(shared).not.toContain('several pods serve');
      expect(single).not.toContain('several pods serve');
    });

    it.each(Object.entries(MATRIX))(
      'should hand the relay only variables it knows (%s)',
      (_label, options) => {
        const env = Object.fromEntries(
          Object.values(envMap(render(options).docs)).map((e) => [e.name, e.value ?? '']),
        );
        const known = RelayConfig.describe().flatMap((d) => d.names);

        expect(unknownVariableWarnings(env, known).map((w) => w.message)).toEqual([]);
      },
    );
  },
);
