// Package servertest holds the tests of the server that hold on any store:
// calls, Fetch, WebSockets, alarms, hooks, limits, timeouts, errors, the
// guard, origins, metrics, remote calls, key-value storage, restarts.
// [Run] runs them on a [Deployment]: the server package runs them on the
// SQLite node database, cluster/etcdstore on etcd. The tests of one store
// (its files, its data directory, its child processes) stay with it.
package servertest

import (
	"testing"

	"github.com/durablego/durable/server"
)

// Deployment is how the suite builds the servers of its tests on one kind
// of storage, and what that storage can do.
type Deployment struct {
	// Storage returns a new storage for one test, isolated from every other
	// test's; resources it holds past the test are freed by t.Cleanup.
	Storage func(t testing.TB) Storage
	// SQL is whether classes with SQL storage (sql: true) can be
	// registered; the tests of SQL objects are skipped when it is false.
	SQL bool
	// Catalog is whether servers on the storage keep the catalog of stored
	// objects (the node database's), which records the name an object was
	// created from: with it an object activated by its ID after a restart
	// (by its alarm) knows its name. A server given WithStore has none; the
	// tests of names after a restart are skipped when it is false.
	Catalog bool
	// Synctest is whether servers on the storage can run inside a
	// testing/synctest bubble, on its fake clock: true for a store in
	// process that does no network I/O, false for one that talks to
	// servers outside the bubble (its timeouts would fire at once). The
	// tests in a bubble are skipped when it is false.
	Synctest bool
}

// Storage is one isolated storage of a deployment. Each call opens it for
// one new server: it returns the options that put the server on it (for
// example server.WithDataDir, or server.WithStore and server.WithSecret),
// and release, which the suite calls once after that server's Shutdown
// returned (nil when there is nothing to free; for a store, it closes it).
// A test calls it again only after the previous server on it has been shut
// down and released: that is a restart, and the new server must see
// everything the old one committed.
type Storage func(t testing.TB) (opts []server.Option, release func() error)

// Run runs every test of the suite on d, each as a subtest named after the
// test (TestX of the server package was the subtest X).
func Run(t *testing.T, d Deployment) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, d) })
	}
}

// tests are the tests of the suite, by file.
var tests = []struct {
	name string
	run  func(*testing.T, Deployment)
}{
	// alarm.go
	{"AlarmFiresOnceAndIsCleared", testAlarmFiresOnceAndIsCleared},
	{"AlarmReplacementDeletionAndRollback", testAlarmReplacementDeletionAndRollback},
	{"AlarmTimes", testAlarmTimes},
	{"AlarmRetriesWithCount", testAlarmRetriesWithCount},
	{"AlarmDroppedAfterSixRetries", testAlarmDroppedAfterSixRetries},
	{"HandlerThatSetsANewAlarmKeepsIt", testHandlerThatSetsANewAlarmKeepsIt},
	{"AlarmActivatesEvictedObject", testAlarmActivatesEvictedObject},
	{"OverdueAlarmFiresAfterRestart", testOverdueAlarmFiresAfterRestart},
	{"ManyAlarmsAtTheSameInstant", testManyAlarmsAtTheSameInstant},
	{"AlarmsFireInTimeOrder", testAlarmsFireInTimeOrder},
	// alarm_cloudflare.go
	{"AlarmHookSeesNoAlarmAndCanReschedule", testAlarmHookSeesNoAlarmAndCanReschedule},
	{"AlarmHookSetsPastTimeRunsAgain", testAlarmHookSetsPastTimeRunsAgain},
	{"AlarmHookDeleteAlarm", testAlarmHookDeleteAlarm},
	{"AlarmFailedRunStaysSet", testAlarmFailedRunStaysSet},
	{"AlarmRetrySeesNoAlarm", testAlarmRetrySeesNoAlarm},
	{"AlarmInThePastIsStoredAsNow", testAlarmInThePastIsStoredAsNow},
	// call.go
	{"CounterInProcess", testCounterInProcess},
	{"ConcurrentCallsAreSerialized", testConcurrentCallsAreSerialized},
	{"MethodErrorRollsBackState", testMethodErrorRollsBackState},
	{"PanicBecomesInternalErrorAndRollsBack", testPanicBecomesInternalErrorAndRollsBack},
	{"FailedCallInBatchKeepsOthers", testFailedCallInBatchKeepsOthers},
	{"InitRunsOnceAndFailureIsRetried", testInitRunsOnceAndFailureIsRetried},
	// catalog.go
	{"NamePersistedForAlarmAfterRestart", testNamePersistedForAlarmAfterRestart},
	// conn.go
	{"StalledBodyCut", testStalledBodyCut},
	{"TrickledBodyCut", testTrickledBodyCut},
	{"ConnectionCapRefusesWhenBusy", testConnectionCapRefusesWhenBusy},
	// emptyname.go
	{"EmptyNameIsAnOrdinaryObject", testEmptyNameIsAnOrdinaryObject},
	// errors.go
	{"ErrorKindsMatchTheSameSentinels", testErrorKindsMatchTheSameSentinels},
	{"StorageErrorKinds", testStorageErrorKinds},
	{"UnknownMethodIsUnimplemented", testUnknownMethodIsUnimplemented},
	{"FetchRouteHidesPanics", testFetchRouteHidesPanics},
	// fetch.go
	{"FetchRoutes", testFetchRoutes},
	{"FetchRouteErrors", testFetchRouteErrors},
	{"FetchBodyLimit", testFetchBodyLimit},
	{"FetchFailureRollsBack", testFetchFailureRollsBack},
	{"FetchStubs", testFetchStubs},
	{"FetchReentrant", testFetchReentrant},
	{"FetchSerializedWithRPC", testFetchSerializedWithRPC},
	{"FetchDurable", testFetchDurable},
	{"FetchOverloaded", testFetchOverloaded},
	// guard.go
	{"GuardDenyAllClosesEveryDoor", testGuardDenyAllClosesEveryDoor},
	{"GuardRefusesBeforeReadingTheBody", testGuardRefusesBeforeReadingTheBody},
	{"GuardSelective", testGuardSelective},
	{"GuardNoneKeepsAnswers", testGuardNoneKeepsAnswers},
	// health.go
	{"HealthNotServingFromShutdown", testHealthNotServingFromShutdown},
	// hooks.go
	{"RegisterRefusesHookWithWrongSignature", testRegisterRefusesHookWithWrongSignature},
	// lifecycle.go
	{"StateSurvivesRestart", testStateSurvivesRestart},
	{"IdleObjectsAreEvictedAndReactivated", testIdleObjectsAreEvictedAndReactivated},
	{"ActiveObjectsAreCapped", testActiveObjectsAreCapped},
	{"FullMailboxIsOverloaded", testFullMailboxIsOverloaded},
	{"ReentrantChainFailsInsteadOfDeadlocking", testReentrantChainFailsInsteadOfDeadlocking},
	{"ShutdownDrainsQueuedCalls", testShutdownDrainsQueuedCalls},
	{"IDs", testIDs},
	{"UnknownClass", testUnknownClass},
	// limits.go
	{"RPCMessageLimit", testRPCMessageLimit},
	{"RPCMessageLimitDefault", testRPCMessageLimitDefault},
	{"RPCMessageLimitEveryHandler", testRPCMessageLimitEveryHandler},
	// metrics.go
	{"MetricsCallsByCode", testMetricsCallsByCode},
	{"MetricsStorageCommits", testMetricsStorageCommits},
	{"MetricsActivationsAndEvictions", testMetricsActivationsAndEvictions},
	{"MetricsMailboxDepthAndOverload", testMetricsMailboxDepthAndOverload},
	{"MetricsAlarms", testMetricsAlarms},
	{"MetricsFetch", testMetricsFetch},
	{"MetricsWebSockets", testMetricsWebSockets},
	{"MetricsRegistrationErrors", testMetricsRegistrationErrors},
	// origin.go
	{"CrossOriginRefusedByDefault", testCrossOriginRefusedByDefault},
	{"TrustedOrigins", testTrustedOrigins},
	{"OriginOptionsRefuseMalformed", testOriginOptionsRefuseMalformed},
	{"CORS", testCORS},
	// remote.go
	{"RemoteStubsOverEveryProtocol", testRemoteStubsOverEveryProtocol},
	{"RemoteErrors", testRemoteErrors},
	{"RemoteIDHeaders", testRemoteIDHeaders},
	{"RemoteOverload", testRemoteOverload},
	{"ReentrantChainAcrossTheNetwork", testReentrantChainAcrossTheNetwork},
	{"GRPCClient", testGRPCClient},
	{"HTTP1Connect", testHTTP1Connect},
	{"RemoteUnknownClass", testRemoteUnknownClass},
	// state_limits.go
	{"StateSizeCap", testStateSizeCap},
	// storage.go
	{"EveryKindOfWriteRollsBack", testEveryKindOfWriteRollsBack},
	{"StorageLimitIsInvalidArgument", testStorageLimitIsInvalidArgument},
	{"Validation", testValidation},
	{"ObjectsAreIsolated", testObjectsAreIsolated},
	{"SQLObjectSurvivesEvictionAndRestart", testSQLObjectSurvivesEvictionAndRestart},
	{"SQLSizeCapFailsCleanly", testSQLSizeCapFailsCleanly},
	// timeout.go
	{"CallTimeoutEndsTheContext", testCallTimeoutEndsTheContext},
	{"CallTimeoutResetsAStuckObject", testCallTimeoutResetsAStuckObject},
	{"CallTimeoutOverTheNetwork", testCallTimeoutOverTheNetwork},
	{"CallTimeoutResetsAStuckSQLObject", testCallTimeoutResetsAStuckSQLObject},
	{"CallTimeoutInterruptsRunawySQL", testCallTimeoutInterruptsRunawySQL},
	{"CallersThatGaveUpFreeTheirMailboxSlots", testCallersThatGaveUpFreeTheirMailboxSlots},
	{"AlarmThatOverrunsIsRetried", testAlarmThatOverrunsIsRetried},
	{"ShutdownWithAStuckObject", testShutdownWithAStuckObject},
	{"CallContextHasTheEarlierDeadline", testCallContextHasTheEarlierDeadline},
	{"InitThatOverrunsFailsTheActivation", testInitThatOverrunsFailsTheActivation},
	{"CallTimeoutCountsFromEachCallsStart", testCallTimeoutCountsFromEachCallsStart},
	// tracing.go
	{"TracingServerSpans", testTracingServerSpans},
	{"TracingTrustRemote", testTracingTrustRemote},
	// websocket.go
	{"WebSocketTagsBroadcast", testWebSocketTagsBroadcast},
	{"WebSocketOrdering", testWebSocketOrdering},
	{"WebSocketAllOrder", testWebSocketAllOrder},
	{"WebSocketHibernation", testWebSocketHibernation},
	{"WebSocketInProcessFetch", testWebSocketInProcessFetch},
	{"WebSocketLimits", testWebSocketLimits},
	{"WebSocketDisconnect", testWebSocketDisconnect},
	{"WebSocketFailingHook", testWebSocketFailingHook},
	{"WebSocketShutdown", testWebSocketShutdown},
	{"WebSocketOversizedInputs", testWebSocketOversizedInputs},
	{"WebSocketShutdownDeadline", testWebSocketShutdownDeadline},
	{"WebSocketSlowClient", testWebSocketSlowClient},
	// websocket_cloudflare.go
	{"WebSocketCloseCodes", testWebSocketCloseCodes},
	{"WebSocketSendAfterClose", testWebSocketSendAfterClose},
	{"WebSocketCloseInsideCloseHook", testWebSocketCloseInsideCloseHook},
	{"WebSocketDroppedAndCodelessClose", testWebSocketDroppedAndCodelessClose},
	{"WebSocketCloseReasonCut", testWebSocketCloseReasonCut},
	{"WebSocketTagsDistinctAndInBytes", testWebSocketTagsDistinctAndInBytes},
}
