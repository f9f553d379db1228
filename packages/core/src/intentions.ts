// Intentions: which service may connect to which. Pure decision logic, shared by the server (the
// `/v1/connect/intentions/check` and `/v1/agent/connect/authorize` endpoints) and the sidecar (which
// decides each inbound connection from its locally cached intentions), so both always agree.
//
// Consul's precedence table (higher wins; namespaces are always "default" without Enterprise):
//
//   prec  src ns  src name  dst ns  dst name
//     9   exact   exact     exact   exact
//     8   exact   *         exact   exact
//     7   *       *         exact   exact
//     6   exact   exact     exact   *
//     5   exact   *         exact   *
//     4   *       *         exact   *
//     3   exact   exact     *       *
//     2   exact   *         *       *
//     1   *       *         *       *
//
// Only one intention governs a pair: the most precise that matches; at equal precedence deny beats
// allow. An intention with L7 Permissions is treated as deny for an L4 (TCP) connection, as Consul's
// authorize endpoint does, because L4 cannot evaluate per-request rules.

export const WILDCARD = '*';

export type IntentionAction = 'allow' | 'deny';

export interface IntentionEndpoint {
  namespace: string;
  name: string;
}

export interface IntentionRule {
  /** Stable ID for logs and the API (Consul's intention ID). */
  id: string;
  source: IntentionEndpoint;
  destination: IntentionEndpoint;
  /** Absent when the intention carries L7 Permissions instead. */
  action: IntentionAction | undefined;
  /** True when the intention has L7 Permissions. */
  hasPermissions?: boolean;
}

export interface IntentionDecision {
  allowed: boolean;
  /** The intention that decided, or undefined when the default policy did. */
  intention: IntentionRule | undefined;
  precedence: number;
  reason: string;
}

function score(ep: IntentionEndpoint): number {
  if (ep.namespace === WILDCARD) return 1;
  return ep.name === WILDCARD ? 2 : 3;
}

/** Consul's precedence of an intention, 1 (most general) to 9 (exact on both sides). */
export function intentionPrecedence(rule: Pick<IntentionRule, 'source' | 'destination'>): number {
  return (score(rule.destination) - 1) * 3 + score(rule.source);
}

function matches(pattern: IntentionEndpoint, actual: IntentionEndpoint): boolean {
  const ns = pattern.namespace === WILDCARD || pattern.namespace === actual.namespace;
  return ns && (pattern.name === WILDCARD || pattern.name === actual.name);
}

/** Does this intention govern connections from `source` to `destination`? */
export function intentionMatches(
  rule: IntentionRule,
  source: IntentionEndpoint,
  destination: IntentionEndpoint,
): boolean {
  return matches(rule.source, source) && matches(rule.destination, destination);
}

/** The effective L4 action of an intention (L7 Permissions count as deny at L4). */
export function l4Action(rule: IntentionRule): IntentionAction {
  return rule.action === 'allow' && !rule.hasPermissions ? 'allow' : 'deny';
}

/**
 * Sort intentions the way they are evaluated: precedence descending, deny before allow at equal
 * precedence, then by source and destination name for a stable order (Consul's list order).
 */
export function sortIntentions<R extends IntentionRule>(rules: readonly R[]): R[] {
  return [...rules].sort((a, b) => {
    const p = intentionPrecedence(b) - intentionPrecedence(a);
    if (p !== 0) return p;
    const d = (l4Action(a) === 'deny' ? 0 : 1) - (l4Action(b) === 'deny' ? 0 : 1);
    if (d !== 0) return d;
    const key = (r: IntentionRule) =>
      `${r.source.namespace}/${r.source.name}>${r.destination.namespace}/${r.destination.name}/${r.id}`;
    return key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;
  });
}

/** Decide whether `source` may open an L4 connection to `destination`. */
export function decideIntention(
  rules: readonly IntentionRule[],
  source: IntentionEndpoint,
  destination: IntentionEndpoint,
  defaultPolicy: IntentionAction,
): IntentionDecision {
  let best: IntentionRule | undefined;
  let bestPrec = 0;
  for (const r of rules) {
    if (!intentionMatches(r, source, destination)) continue;
    const p = intentionPrecedence(r);
    if (p > bestPrec || (p === bestPrec && best && l4Action(r) === 'deny' && l4Action(best) === 'allow')) {
      best = r;
      bestPrec = p;
    }
  }
  const who = `${source.namespace}/${source.name} -> ${destination.namespace}/${destination.name}`;
  if (!best) {
    return {
      allowed: defaultPolicy === 'allow',
      intention: undefined,
      precedence: 0,
      reason: `no intention matches ${who}; default policy is ${defaultPolicy}`,
    };
  }
  const action = l4Action(best);
  const what = best.hasPermissions ? 'has L7 permissions (deny at L4)' : action;
  return {
    allowed: action === 'allow',
    intention: best,
    precedence: bestPrec,
    reason: `intention ${best.source.namespace}/${best.source.name} -> ${best.destination.namespace}/${best.destination.name} (precedence ${bestPrec}) ${what}`,
  };
}
