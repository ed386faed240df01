// bandvote's MongoDB users, created by the mongo image on its first start (an
// empty data directory; /docker-entrypoint-initdb.d). Passwords come from the
// Secret `bandvote-mongo` (scripts/k8s-secrets.sh), never from this file.
//   consumer: readWrite on `bandvote` (the vote log, its indexes, dead letters)
//   web:      read on `bandvote` (the results page's log)
const bandvote = db.getSiblingDB('bandvote');
bandvote.createUser({ user: 'consumer', pwd: process.env.MONGO_CONSUMER_PASSWORD, roles: [{ role: 'readWrite', db: 'bandvote' }] });
bandvote.createUser({ user: 'web', pwd: process.env.MONGO_WEB_PASSWORD, roles: [{ role: 'read', db: 'bandvote' }] });
