// Role-aware navigation: which places each role works with (roles from server/auth/context.ts).
// Parts of Wardlink not yet in the web app are left out rather than shown as dead links.
import type { Role } from './auth/session.ts';
import type { MessageKey } from './i18n/index.ts';

export type Roles = readonly Role[] | 'all';

export interface NavItem {
  path: string;
  label: MessageKey;
  roles: Roles;
}

export const STAFF: readonly Role[] = ['admin', 'clinician', 'nurse', 'department-head'];
export const REQUESTERS: readonly Role[] = ['admin', 'clinician', 'department-head'];
/** Who works with referrals (and opens a request's detail): staff and the front desk. */
export const REFERRERS: readonly Role[] = ['admin', 'clinician', 'nurse', 'department-head', 'receptionist'];

export const NAV: NavItem[] = [
  { path: '/', label: 'nav.home', roles: 'all' },
  { path: '/board', label: 'nav.board', roles: STAFF },
  { path: '/requests', label: 'nav.myRequests', roles: REQUESTERS },
  { path: '/consults/new', label: 'nav.newConsult', roles: REQUESTERS },
  { path: '/referrals', label: 'nav.referrals', roles: REFERRERS },
  { path: '/my-care', label: 'nav.myCare', roles: ['patient'] },
];

export function allowed(roles: Roles, role: Role | undefined): boolean {
  return roles === 'all' || (role !== undefined && roles.includes(role));
}
