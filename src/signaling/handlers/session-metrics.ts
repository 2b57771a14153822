import { descriptionParser, MetricsReportSchema } from '../../protocol/envelope';
import type { Handler, HandlerContext } from '../types';

const parseReport = descriptionParser(MetricsReportSchema);

/** A client's report of a finished call, read into the metrics and not relayed (PROTOCOL.md §5). */
export function sessionMetrics({ metrics }: Pick<HandlerContext, 'metrics'>): Handler {
  return async (session, message) => {
    session.requireMember();
    const report = parseReport(message.jsongle.description ?? {}, 'session-metrics');
    metrics.callReported(report.duration, report.error);
  };
}
