/**
 * Who may call what. Every route declares the least role it needs in its
 * options (`config: { role: 'viewer' }`); one onRequest hook (./auth.ts)
 * enforces it, and the OpenAPI document shows it as `x-patronus-role`.
 *
 * The roles are ordered: each one can do everything the ones before it can.
 *   metrics   GET /metrics only (a Prometheus scraper)
 *   viewer    read-only: status, documents and revisions (secrets redacted), counters, services
 *   operator  validate, plan, apply, confirm, roll back, HA sync; no key export, no token or user management
 *   admin     everything, including WireGuard/OpenVPN client exports
 * `public` is not a role a principal can have: it marks routes that need no
 * authentication (/healthz, /schema.json, sign-in).
 */
export const ROLES = ['metrics', 'viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];
export type RouteRole = Role | 'public';

export function isRole(v: unknown): v is Role {
  return typeof v === 'string' && (ROLES as readonly string[]).includes(v);
}

/** Whether a principal with `have` may call a route that needs `need`. */
export function allows(have: Role, need: RouteRole): boolean {
  return need === 'public' || ROLES.indexOf(have) >= ROLES.indexOf(need);
}

/** The roles below `need` (the ones a route must refuse). */
export function rolesBelow(need: RouteRole): Role[] {
  return need === 'public' ? [] : ROLES.slice(0, ROLES.indexOf(need));
}

/** Parses a role given on the command line or in a request; throws naming the choices. */
export function parseRole(v: string): Role {
  if (!isRole(v)) throw new Error(`"${v}" is not a role (${ROLES.join(', ')})`);
  return v;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** the least role that may call this route (see src/api/auth/roles.ts); routes without one need admin */
    role?: RouteRole;
  }
}
