/** Open console sessions: an admin sees and ends all of them, everyone else their own. */
import { useEffect, useState } from 'preact/hooks';
import { get, request, type Get, type Identity } from '../api';
import { ago } from '../format';
import { Scroll } from '../scroll';

type Session = Get<'/api/v1/sessions'>[number];

export function Sessions({ me }: { me: Identity }) {
  const [list, setList] = useState<Session[]>([]);
  const [status, setStatus] = useState<string>();
  const load = () => get('/api/v1/sessions').then(setList, (e: Error) => setStatus(e.message));
  useEffect(() => {
    void load();
  }, []);
  const revoke = async (s: Session) => {
    try {
      await request('DELETE', `/api/v1/sessions/${encodeURIComponent(s.id)}`);
      setStatus(`Session of ${s.user} ended`);
      void load();
    } catch (e) {
      setStatus((e as Error).message);
    }
  };
  return (
    <>
      <h1 tabIndex={-1}>Sessions</h1>
      <p class="muted">{me.role === 'admin' ? 'Every open console session.' : 'Your open console sessions.'}</p>
      {status && <p role="status">{status}</p>}
      <Scroll label="Sessions" card>
        <table data-testid="sessions">
          <thead>
            <tr>
              <th scope="col">User</th>
              <th scope="col">Role</th>
              <th scope="col">Signed in with</th>
              <th scope="col">Since</th>
              <th scope="col">Last seen</th>
              <th scope="col">Ends</th>
              <th scope="col">From</th>
              <th scope="col">End</th>
            </tr>
          </thead>
          <tbody>
            {list.map((s) => (
              <tr key={s.id}>
                <th scope="row">
                  {s.user}
                  {s.current && <span class="muted"> (this one)</span>}
                </th>
                <td>{s.role}</td>
                <td>{s.via}</td>
                <td>{ago(s.createdAt)}</td>
                <td>{ago(s.lastSeenAt)}</td>
                <td>{new Date(s.expiresAt).toLocaleString()}</td>
                <td title={s.userAgent ?? ''}>{s.address ?? ''}</td>
                <td>
                  {!s.current && (
                    <button type="button" onClick={() => revoke(s)}>
                      End session of {s.user}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </Scroll>
    </>
  );
}
