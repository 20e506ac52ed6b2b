import {
  Injectable,
  Module,
  RequestMethod,
  type OnApplicationBootstrap,
  type Type,
} from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import {
  DiscoveryModule,
  DiscoveryService,
  HttpAdapterHost,
  MetadataScanner,
  Reflector,
} from '@nestjs/core';
import { match, type MatchFunction } from 'path-to-regexp';
import {
  ACCESS_LOG,
  BODY_POLICY,
  CORS_POLICY,
  ERROR_STYLE,
  OWN_METRICS_LABEL,
  type AccessLogLevel,
  type BodyPolicy,
  type CorsDeclaration,
  type CorsPolicy,
  type ErrorStyle,
  type PathFacts,
} from '../common/route-facts';

/** One method and path a controller serves, with what it declares. */
export interface DeclaredRoute {
  readonly method: string;
  readonly path: string;
  /** `Controller.method`, for messages. */
  readonly handler: string;
  readonly style: ErrorStyle | undefined;
  readonly cors: CorsDeclaration | undefined;
  readonly ownMetricsLabel: boolean;
  readonly log: AccessLogLevel;
  readonly body: BodyPolicy;
}

type RouterStack = Array<{ route?: { path?: unknown; methods?: Record<string, boolean> } }>;

/** Joins a controller path and a method path as Nest registers them (`/` + segments). */
function joinPath(controllerPath: string, methodPath: string): string {
  const segments = [controllerPath, methodPath]
    .map((p) => p.replace(/^\/+|\/+$/g, ''))
    .filter((p) => p !== '');
  return `/${segments.join('/')}`;
}

function asList(value: unknown): string[] {
  if (value === undefined) {
    return [];
  }
  return (Array.isArray(value) ? value : [value]).map(String);
}

function isUnder(path: string, prefixes: readonly string[] | undefined): boolean {
  return prefixes === undefined || prefixes.some((p) => path === p || path.startsWith(`${p}/`));
}

function corsFor(path: string, declared: CorsDeclaration): CorsPolicy {
  return isUnder(path, declared.under) ? declared.policy : 'none';
}

function sameBody(a: BodyPolicy, b: BodyPolicy): boolean {
  return a.limit === b.limit && a.tooLarge === b.tooLarge && a.lenient === b.lenient;
}

/**
 * The one table of route facts (CORS, error style, metrics label, access log, body policy), built
 * at boot from the controllers' declarations (`route-facts.ts`) and checked against the routes
 * the router serves. The front-door middleware, the body parsers, the metrics and the exception
 * filter all read it; a route with no declared error style or CORS policy stops the boot.
 */
@Injectable()
export class RouteTable implements OnApplicationBootstrap {
  private readonly exact = new Map<string, PathFacts>();
  private readonly templates = new Map<string, PathFacts>();
  private patterns: Array<{ matches: MatchFunction<object>; facts: PathFacts }> = [];
  private subtrees: Array<{ prefix: string; facts: PathFacts }> = [];
  private declared: DeclaredRoute[] = [];

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly reflector: Reflector,
    private readonly adapterHost: HttpAdapterHost,
  ) {}

  /** After the router has its routes (Nest calls this hook once they are registered). */
  onApplicationBootstrap(): void {
    this.load(this.discover());
    this.checkRouter();
  }

  /** Every route the controllers declare, in discovery order. */
  routes(): readonly DeclaredRoute[] {
    return this.declared;
  }

  /**
   * The facts of a request path: a served path, then a parameterised route, then a path below a
   * route that declares its CORS policy for sub-paths; null where no controller serves the path.
   */
  lookup(path: string): PathFacts | null {
    const exact = this.exact.get(path);
    if (exact !== undefined) {
      return exact;
    }
    for (const p of this.patterns) {
      if (p.matches(path) !== false) {
        return p.facts;
      }
    }
    for (const s of this.subtrees) {
      if (path.startsWith(s.prefix)) {
        return s.facts;
      }
    }
    return null;
  }

  /** The facts of a route the router matched, by its template (`req.route.path`). */
  forTemplate(template: string): PathFacts | null {
    return this.templates.get(template) ?? null;
  }

  private discover(): DeclaredRoute[] {
    const routes: DeclaredRoute[] = [];
    const undeclared: string[] = [];
    for (const wrapper of this.discovery.getControllers()) {
      const controller = wrapper.metatype as Type | null;
      if (controller === null || typeof controller !== 'function') {
        continue;
      }
      const controllerPaths = asList(Reflect.getMetadata(PATH_METADATA, controller));
      const prototype = controller.prototype as Record<string, unknown>;
      for (const name of this.scanner.getAllMethodNames(prototype)) {
        const handler = prototype[name] as (...args: unknown[]) => unknown;
        const methodPaths = Reflect.getMetadata(PATH_METADATA, handler) as unknown;
        if (methodPaths === undefined) {
          continue;
        }
        const verb = RequestMethod[Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod];
        const targets = [handler, controller];
        const read = <T>(key: string): T | undefined =>
          this.reflector.getAllAndOverride<T | undefined>(key, targets);
        const style = read<ErrorStyle>(ERROR_STYLE);
        const cors = read<CorsDeclaration>(CORS_POLICY);
        const label = `${controller.name}.${name}`;
        for (const cp of controllerPaths.length > 0 ? controllerPaths : ['']) {
          for (const mp of asList(methodPaths)) {
            const route: DeclaredRoute = {
              method: verb,
              path: joinPath(cp, mp),
              handler: label,
              style,
              cors,
              ownMetricsLabel: read<boolean>(OWN_METRICS_LABEL) ?? false,
              log: read<AccessLogLevel>(ACCESS_LOG) ?? 'info',
              body: read<BodyPolicy>(BODY_POLICY) ?? {},
            };
            if (style === undefined || cors === undefined) {
              const missing = [
                style === undefined ? '@ErrorDialect' : '',
                cors === undefined ? '@Cors' : '',
              ]
                .filter((m) => m !== '')
                .join(' and ');
              undeclared.push(`${verb} ${route.path} (${label}) declares no ${missing}`);
            }
            routes.push(route);
          }
        }
      }
    }
    if (undeclared.length > 0) {
      throw new Error(`Routes without their facts:\n${undeclared.join('\n')}`);
    }
    return routes;
  }

  private load(routes: DeclaredRoute[]): void {
    this.declared = routes;
    const byPath = new Map<string, DeclaredRoute[]>();
    for (const route of routes) {
      byPath.set(route.path, [...(byPath.get(route.path) ?? []), route]);
    }
    const conflicts: string[] = [];
    for (const [path, group] of byPath) {
      const first = group[0] as DeclaredRoute;
      const cors = corsFor(path, first.cors as CorsDeclaration);
      for (const other of group.slice(1)) {
        if (
          corsFor(path, other.cors as CorsDeclaration) !== cors ||
          other.ownMetricsLabel !== first.ownMetricsLabel ||
          other.log !== first.log ||
          !sameBody(other.body, first.body)
        ) {
          conflicts.push(
            `${path}: ${first.handler} and ${other.handler} declare different path facts`,
          );
        }
      }
      const facts: PathFacts = {
        template: path,
        cors,
        metricsLabel: first.ownMetricsLabel ? path : null,
        log: first.log,
        body: first.body,
        styles: new Map(group.map((r) => [r.method, r.style as ErrorStyle])),
      };
      this.templates.set(path, facts);
      if (/[:*{]/.test(path)) {
        this.patterns.push({
          matches: match(path, { decode: false, trailing: false, sensitive: true }),
          facts,
        });
      } else {
        this.exact.set(path, facts);
      }
      if (cors === 'public' && first.cors?.subPaths === true) {
        this.subtrees.push({
          prefix: `${path}/`,
          facts: { ...facts, template: `${path}/*`, metricsLabel: null, styles: new Map() },
        });
      }
    }
    if (conflicts.length > 0) {
      throw new Error(`Conflicting route facts:\n${conflicts.join('\n')}`);
    }
  }

  /** Every declared route must be one the router serves, or the table describes another app. */
  private checkRouter(): void {
    const instance = this.adapterHost.httpAdapter?.getInstance<{
      router?: { stack?: RouterStack };
    }>();
    const served = new Set<string>();
    for (const layer of instance?.router?.stack ?? []) {
      const path = layer.route?.path;
      if (typeof path !== 'string') {
        continue;
      }
      for (const [method, on] of Object.entries(layer.route?.methods ?? {})) {
        if (on) {
          served.add(`${method.toUpperCase()} ${path}`);
        }
      }
    }
    const unknown = this.declared
      .map((r) => `${r.method} ${r.path}`)
      .filter((key) => !served.has(key) && !served.has(`_ALL ${key.split(' ')[1]}`));
    if (unknown.length > 0) {
      throw new Error(`Declared routes the router does not serve:\n${unknown.join('\n')}`);
    }
  }
}

/** Provides the {@link RouteTable} to the front door, the exception filter and the metrics. */
@Module({
  imports: [DiscoveryModule],
  providers: [RouteTable],
  exports: [RouteTable],
})
export class RouteFactsModule {}
